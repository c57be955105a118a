import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';
import { BACKBONE, STAND_IN_KEY, StandInEdge } from './stand-in-edge.ts';

describe('ladder chat', () => {
  let edge: StandInEdge;
  let env: Record<string, string>;
  beforeAll(async () => {
    edge = await StandInEdge.start();
    env = { LADDER_BASE_URL: edge.url, LADDER_API_KEY: STAND_IN_KEY };
  });
  afterAll(() => edge.close());
  beforeEach(() => {
    edge.chatStreamError = null;
  });

  const chatBodies = () => edge.requestsTo('POST', '/v1/chat/completions').map((r) => JSON.parse(r.body));

  it('streams the answer to one message and passes the sampling options', async () => {
    const run = await runCli(
      ['chat', BACKBONE, 'What', 'is', 'the', 'capital?', '--max-tokens', '32', '--temperature', '0'],
      { env },
    );
    expect(run).toEqual({ code: 0, stdout: 'You said: What is the capital?\n', stderr: '' });
    expect(chatBodies().at(-1)).toEqual({
      model: BACKBONE,
      max_tokens: 32,
      temperature: 0,
      messages: [{ role: 'user', content: 'What is the capital?' }],
      stream: true,
    });
    expect(edge.requests.at(-1)!.headers.get('accept')).toBe('text/event-stream');
  });

  it('notes an answer cut at --max-tokens', async () => {
    const run = await runCli(['chat', BACKBONE, 'one two three four', '--max-tokens', '2'], { env });
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('--max-tokens');
  });

  it('the REPL keeps the conversation, /reset starts over, /exit quits', async () => {
    edge.reply = (messages) => `reply ${messages.filter((m) => m.role === 'user').length}`;
    const before = chatBodies().length;
    const run = await runCli(['chat', BACKBONE, '--system', 'Be brief.'], {
      env,
      stdin: ['hello', '', 'and again', '/reset', 'fresh', '/exit', 'never sent'],
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('reply 1\nreply 2\nreply 1\n');
    const bodies = chatBodies().slice(before);
    expect(bodies.map((b) => b.messages)).toEqual([
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hello' },
      ],
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'reply 1' },
        { role: 'user', content: 'and again' },
      ],
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'fresh' },
      ],
    ]);
  });

  it('the REPL ends at the end of input', async () => {
    const run = await runCli(['chat', BACKBONE], { env, stdin: ['hi'] });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('reply 1\n');
  });

  it('reports an unknown model, and an error event in the middle of a stream', async () => {
    const unknown = await runCli(['chat', 'ft:nope', 'hi'], { env });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe(
      "error: The model 'ft:nope' does not exist or you do not have access to it. (model_not_found)\n",
    );
    const repl = await runCli(['chat', 'ft:nope'], { env, stdin: ['hi'] });
    expect(repl.code).toBe(1);
    expect(edge.requests.at(-1)!.path).toBe('/v1/models/ft%3Anope');

    edge.chatStreamError = 'The worker ended the stream early.';
    edge.reply = () => 'partial answer here';
    const cut = await runCli(['chat', BACKBONE, 'hi'], { env });
    expect(cut.code).toBe(1);
    expect(cut.stdout).toBe('partial \n');
    expect(cut.stderr).toBe('error: The worker ended the stream early. (worker_error)\n');
  });
});
