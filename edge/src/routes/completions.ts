import { createRoute } from '@hono/zod-openapi';
import { ChatCompletion, ChatCompletionRequest, CompletionRequest, TextCompletion } from '@ladder/schemas';
import { complete } from '../inference/generate.ts';
import { promptLimit } from '../inference/prompt-limit.ts';
import { bearer, errorResponses, json, router } from '../lib/openapi.ts';

const streamNote =
  'With `stream: true`, server-sent events in OpenAI chunk format; the last chunk carries `usage`.';
const chatText =
  "Messages go through the backbone's chat template; their content is text: a special token typed in it " +
  '(`<|im_start|>`, `<|endoftext|>`) is encoded as those characters, never as the control token. Only the ' +
  "template's own markers are special tokens, exactly as when the adapter was trained on a chat.";
const promptText =
  'The prompt is text, encoded as training encodes `prompt`/`completion` lines: special tokens spelled out ' +
  "in it (`<|im_start|>`, `<|endoftext|>`) are ordinary characters, not control tokens (the tokenizer's own " +
  'start-of-text token, when it adds one, is the only special token). To talk to a chat model in its turn ' +
  'format, use `/v1/chat/completions`.';

export function completionRoutes() {
  const app = router();
  app.use('/v1/chat/completions', promptLimit('messages'));
  app.use('/v1/completions', promptLimit('prompt'));
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/chat/completions',
      security: bearer,
      description: `\`model\` is a backbone or one of your adapters (\`ft:...\`). ${chatText} ${streamNote}`,
      request: {
        body: { content: { 'application/json': { schema: ChatCompletionRequest } }, required: true },
      },
      responses: { 200: json(ChatCompletion), ...errorResponses },
    }),
    async (c) => complete(c.env, c.get('tenant'), 'chat', c.req.valid('json'), c.executionCtx) as never,
  );
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/completions',
      security: bearer,
      description: `\`model\` is a backbone or one of your adapters (\`ft:...\`). ${promptText} ${streamNote}`,
      request: { body: { content: { 'application/json': { schema: CompletionRequest } }, required: true } },
      responses: { 200: json(TextCompletion), ...errorResponses },
    }),
    async (c) => complete(c.env, c.get('tenant'), 'text', c.req.valid('json'), c.executionCtx) as never,
  );
  return app;
}
