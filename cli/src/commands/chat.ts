import { createInterface } from 'node:readline';
import { ApiError, type ChatMessage, CompletionUsage, describeIssues, ModelObject } from '@ladder/schemas';
import { z } from 'zod';
import { type Command, type CommandContext, numberOption, stringOption } from '../command.ts';
import { ApiRequestError, CliError, formatError } from '../errors.ts';

type Message = ChatMessage;

/** An OpenAI chat.completion.chunk, as far as the CLI reads it. */
const ChatChunk = z.object({
  choices: z
    .array(
      z.object({
        delta: z.object({ content: z.string().nullish() }).optional(),
        finish_reason: z.string().nullish(),
      }),
    )
    .default([]),
  usage: CompletionUsage.nullish(),
});

interface Sampling {
  model: string;
  max_tokens?: number;
  temperature?: number;
}

/** One data payload of a chat stream: a chunk, or the error event that ends a failed stream. */
function parseChunk(data: string): z.infer<typeof ChatChunk> {
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    throw new CliError(`unexpected chat chunk (not JSON): ${data.slice(0, 200)}`);
  }
  const failure = ApiError.safeParse(raw);
  if (failure.success) {
    const { message, code, type } = failure.data.error;
    throw new ApiRequestError(200, message, code ?? type);
  }
  const chunk = ChatChunk.safeParse(raw);
  if (!chunk.success) throw new CliError(`unexpected chat chunk: ${describeIssues(chunk.error)}`);
  return chunk.data;
}

/** Streams one answer to stdout as it arrives; returns its text for the conversation. */
async function streamAnswer(ctx: CommandContext, sampling: Sampling, messages: Message[]): Promise<string> {
  let text = '';
  let finish: string | null = null;
  const body = { ...sampling, messages, stream: true };
  try {
    for await (const sse of ctx.client.events('POST', '/v1/chat/completions', { body })) {
      if (sse.data === '[DONE]') break;
      for (const choice of parseChunk(sse.data).choices) {
        const delta = choice.delta?.content;
        if (delta) {
          text += delta;
          ctx.io.stdout.write(delta);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  } catch (err) {
    // End the half-written answer's line, so the error starts on its own.
    if (text) ctx.io.stdout.write('\n');
    throw err;
  }
  ctx.io.stdout.write('\n');
  if (finish === 'length') ctx.note('(the answer stopped at the token limit: --max-tokens)');
  return text;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream)
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  return text;
}

/** The conversation REPL: each answer is streamed and kept, so the model sees the whole exchange. */
async function repl(ctx: CommandContext, sampling: Sampling, system: Message[]): Promise<number> {
  // Fail now on an unknown model rather than after the first question.
  await ctx.client.json(ModelObject, 'GET', `/v1/models/${encodeURIComponent(sampling.model)}`);
  const { stdin, stdout } = ctx.io;
  const interactive = stdin.isTTY === true && typeof (stdout as { on?: unknown }).on === 'function';
  const rl = createInterface({
    input: stdin,
    output: interactive ? (stdout as NodeJS.WritableStream) : undefined,
    terminal: interactive,
  });
  rl.setPrompt('you> ');
  ctx.note(`chatting with ${sampling.model}: /reset starts over, /exit or Ctrl-D quits`);
  const prompt = () => interactive && rl.prompt();
  let messages = [...system];
  prompt();
  try {
    for await (const line of rl) {
      const text = line.trim();
      if (text === '/exit' || text === '/quit') break;
      if (text === '/reset') {
        messages = [...system];
        ctx.note('(conversation cleared)');
      } else if (text) {
        messages.push({ role: 'user', content: line });
        try {
          messages.push({ role: 'assistant', content: await streamAnswer(ctx, sampling, messages) });
        } catch (err) {
          if (!(err instanceof ApiRequestError)) throw err;
          messages.pop();
          ctx.io.stderr.write(formatError(err));
        }
      }
      prompt();
    }
  } finally {
    rl.close();
  }
  return 0;
}

export const chat: Command = {
  summary: 'one message and its streamed answer, or a conversation',
  args: ['<model>', '[message...]'],
  description:
    'With a message, prints the streamed answer and exits ("-" reads the message from stdin).\nWithout one, a REPL that keeps the conversation: /reset starts over, /exit or Ctrl-D quits.',
  options: {
    'max-tokens': { type: 'string', value: '<n>', help: 'longest answer in tokens' },
    temperature: { type: 'string', value: '<t>', help: '0 (greedy) to 2' },
    system: { type: 'string', value: '<text>', help: 'a system message first' },
  },
  async run(ctx, input) {
    const sampling: Sampling = {
      model: input.args[0]!,
      max_tokens: numberOption(input, 'max-tokens', { min: 1, max: 32_768, integer: true }),
      temperature: numberOption(input, 'temperature', { min: 0, max: 2 }),
    };
    const systemText = stringOption(input, 'system');
    const system: Message[] = systemText === undefined ? [] : [{ role: 'system', content: systemText }];
    const words = input.args.slice(1);
    if (words.length === 0) return repl(ctx, sampling, system);
    const message = words.join(' ') === '-' ? (await readAll(ctx.io.stdin)).trimEnd() : words.join(' ');
    await streamAnswer(ctx, sampling, [...system, { role: 'user', content: message }]);
    return 0;
  },
};
