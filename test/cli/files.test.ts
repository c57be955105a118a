import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';
import { STAND_IN_KEY, StandInEdge } from './stand-in-edge.ts';

const chatLine = (q: string, a: string) =>
  JSON.stringify({
    messages: [
      { role: 'user', content: q },
      { role: 'assistant', content: a },
    ],
  });

describe('ladder files', () => {
  let edge: StandInEdge;
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    edge = await StandInEdge.start();
    env = { LADDER_BASE_URL: edge.url, LADDER_API_KEY: STAND_IN_KEY };
  });
  afterAll(() => edge.close());
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ladder-files-'));
    edge.uploadRefusal = null;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('uploads a JSONL file as multipart and prints its id on stdout', async () => {
    writeFileSync(join(dir, 'train.jsonl'), `${chatLine('2+2?', '4')}\n${chatLine('3+3?', '6')}\n`);
    const run = await runCli(['files', 'upload', 'train.jsonl'], { env, cwd: dir });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('file-1\n');
    expect(run.stderr).toContain('uploaded train.jsonl: 2 chat lines');
    const [upload] = edge.requestsTo('POST', '/v1/files');
    expect(upload!.headers.get('content-type')).toMatch(/^multipart\/form-data; boundary=/);
    expect(upload!.headers.get('authorization')).toBe(`Bearer ${STAND_IN_KEY}`);
    expect(upload!.body).toContain('name="purpose"\r\n\r\nfine-tune');
    expect(upload!.body).toContain('filename="train.jsonl"');
  });

  it("lists each invalid line's error, uploads nothing and exits 1", async () => {
    const lines = [
      chatLine('a', 'b'),
      JSON.stringify({
        messages: [
          { role: 'robot', content: 'x' },
          { role: 'assistant', content: 'y' },
        ],
      }),
      '{not json',
      chatLine('c', 'd'),
    ];
    writeFileSync(join(dir, 'bad.jsonl'), `${lines.join('\n')}\n`);
    const before = edge.requestsTo('POST', '/v1/files').length;
    const run = await runCli(['files', 'upload', 'bad.jsonl'], { env, cwd: dir });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    const err = run.stderr.split('\n');
    expect(err[0]).toBe('error: bad.jsonl: 2 invalid line(s) of 4; nothing was uploaded');
    expect(err[1]).toMatch(/^ {2}line 2: messages\.0\.role: /);
    expect(err[2]).toMatch(/^ {2}line 3: /);
    expect(edge.requestsTo('POST', '/v1/files').length).toBe(before);
  });

  it("lists the edge's line errors one per line when the edge refuses the file", async () => {
    edge.uploadRefusal =
      'Invalid training file: 2 invalid line(s) of 9. line 4: completion: must not be empty; line 7: prompt: Invalid input (and 3 more)';
    writeFileSync(join(dir, 'ok.jsonl'), `${chatLine('a', 'b')}\n`);
    const run = await runCli(['files', 'upload', 'ok.jsonl'], { env, cwd: dir });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      [
        'error: Invalid training file: 2 invalid line(s) of 9. (invalid_file)',
        '  line 4: completion: must not be empty',
        '  line 7: prompt: Invalid input',
        '  (and 3 more)',
        '',
      ].join('\n'),
    );
  });

  it('says so when the file is missing', async () => {
    const run = await runCli(['files', 'upload', 'nope.jsonl'], { env, cwd: dir });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('error: cannot read nope.jsonl: no such file\n');
  });

  it('lists files as a table, and as JSON with --json', async () => {
    const run = await runCli(['files', 'list'], { env });
    expect(run.code).toBe(0);
    const [header, first] = run.stdout.split('\n');
    expect(header).toMatch(/^ID\s+FILENAME\s+FORMAT\s+LINES\s+SIZE\s+CREATED \(UTC\)$/);
    expect(first).toMatch(/^file-1\s+train\.jsonl\s+chat\s+2\s+\d+ B\s+2025-06-15 15:06:40$/);
    const json = await runCli(['files', 'list', '--json', '--limit', '5'], { env });
    expect(JSON.parse(json.stdout).data[0].id).toBe('file-1');
    expect(edge.requests.at(-1)!.query.get('limit')).toBe('5');
  });
});
