/** One server-sent event: `event:` (default "message"), the joined `data:` lines and `id:`. */
export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

/**
 * Splits a text/event-stream body into events (https://html.spec.whatwg.org/#event-stream-interpretation).
 * Leaving the loop early cancels the body, which closes the connection.
 */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  let event = '';
  let data: string[] = [];
  let id: string | null = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline).replace(/\r$/, '');
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
        if (line === '') {
          if (data.length) yield { event: event || 'message', data: data.join('\n'), id };
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(text);
        else if (field === 'event') event = text;
        else if (field === 'id') id = text;
      }
    }
    // A stream cut without its blank line still delivers the last event.
    if (pending.startsWith('data:')) data.push(pending.slice(5).replace(/^ /, ''));
    if (data.length) yield { event: event || 'message', data: data.join('\n'), id };
  } finally {
    await reader.cancel().catch(() => {});
  }
}
