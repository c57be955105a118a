import type { ChatLine } from '@ladder/schemas';
import type { EscapedChat } from '../../backbone/tokenizer/index.ts';
import { ExampleError } from './errors.ts';
import type { DataTokenizer } from './types.ts';

/** A piece of the rendered chat, tokenized on its own. */
type Piece =
  | { kind: 'context'; text: string }
  | {
      /** An assistant turn (messages[message]), trained through its end-of-turn token. */
      kind: 'turn';
      text: string;
      message: number;
      /** The turn's end is where the template's render of the chat up to this turn ends. */
      closedByTemplate: boolean;
    };

/**
 * A chat line -> token ids and "trained" flags, through the backbone's own chat template.
 *
 * Assistant turn i starts where the generation prompt ends: render(messages[:i], add_generation_prompt)
 * must be a prefix of render(messages). From there the labels run through the first end-of-turn
 * token (a stop token, else the first special token) and stop: the content plus e.g. `<|im_end|>`,
 * not the newline the template writes after it. That is exactly what generation must produce
 * after the same prompt, whatever the template does to the content (trimming, think blocks).
 * When the template closes turns with plain text (no special token), render(messages[:i+1]) must
 * also be a prefix, and the turn is trained up to its end.
 *
 * Each piece is tokenized on its own (prompt pieces as generation would tokenize the prompt), so
 * the trained tokens decode to exactly the turn's text. Content is text: a special token spelled
 * out in a message encodes as its characters (the template's markers alone are special ids), so
 * a typed `<|im_end|>` neither ends a turn early nor differs from what serving feeds the model.
 */
export function chatTokens(
  tokenizer: DataTokenizer,
  messages: ChatLine['messages'],
  line: number,
): { tokens: number[]; trained: boolean[] } {
  // Rendered with the content escaped, so that only the template's markers encode as special
  // tokens (a typed `<|im_end|>` is text here, as it is when serving the same chat).
  let chat: EscapedChat;
  try {
    chat = tokenizer.escapeChat(messages);
  } catch (e) {
    throw new ExampleError(line, 'messages', `the chat template failed: ${(e as Error).message}`);
  }
  const render = (upTo: number, addGenerationPrompt: boolean): string => {
    try {
      return tokenizer.applyChatTemplate(chat.messages.slice(0, upTo), {
        ...chat.options,
        addGenerationPrompt,
      });
    } catch (e) {
      throw new ExampleError(line, 'messages', `the chat template failed: ${(e as Error).message}`);
    }
  };
  const prompts = new Map<number, string>();
  const promptBefore = (i: number): string => {
    if (!prompts.has(i)) prompts.set(i, render(i, true));
    return prompts.get(i)!;
  };
  const full = render(messages.length, false);
  const pieces: Piece[] = [];
  let cursor = 0;
  for (let i = 0; i < messages.length; i++) {
    if (messages[i]!.role !== 'assistant') continue;
    const prompt = promptBefore(i);
    if (!full.startsWith(prompt) || prompt.length < cursor) {
      throw new ExampleError(
        line,
        `messages.${i}`,
        'the chat template does not render the conversation before this assistant turn as a prefix of the whole',
      );
    }
    const through = render(i + 1, false);
    const closedByTemplate = full.startsWith(through) && through.length > prompt.length;
    const next = messages.findIndex((m, j) => j > i && m.role === 'assistant');
    const end = closedByTemplate ? through.length : next < 0 ? full.length : promptBefore(next).length;
    if (end < prompt.length)
      throw new ExampleError(line, `messages.${i}`, 'cannot find where this turn ends');
    pieces.push({ kind: 'context', text: full.slice(cursor, prompt.length) });
    pieces.push({ kind: 'turn', text: full.slice(prompt.length, end), message: i, closedByTemplate });
    cursor = end;
  }
  pieces.push({ text: full.slice(cursor), kind: 'context' });

  const stops = new Set(tokenizer.stopTokenIds);
  const tokens: number[] = [];
  const trained: boolean[] = [];
  for (const piece of pieces) {
    if (piece.text === '') continue;
    let ids: number[];
    try {
      ids = chat.encode(piece.text);
    } catch (e) {
      const field = piece.kind === 'turn' ? `messages.${piece.message}` : 'messages';
      throw new ExampleError(line, field, (e as Error).message);
    }
    let trainedTokens = 0;
    if (piece.kind === 'turn') {
      let endOfTurn = ids.findIndex((id) => stops.has(id));
      if (endOfTurn < 0) endOfTurn = ids.findIndex((id) => tokenizer.isSpecial(id));
      if (endOfTurn < 0 && !piece.closedByTemplate) {
        throw new ExampleError(
          line,
          `messages.${piece.message}`,
          'the chat template writes no end-of-turn token after it',
        );
      }
      trainedTokens = endOfTurn < 0 ? ids.length : endOfTurn + 1;
    }
    for (const [j, id] of ids.entries()) {
      tokens.push(id);
      trained.push(j < trainedTokens);
    }
  }
  return { tokens, trained };
}
