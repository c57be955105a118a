import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageReport } from '@ladder/schemas';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { runCli } from './run-cli.ts';
import { BACKBONE, STAND_IN_ADMIN_TOKEN, STAND_IN_KEY, StandInEdge } from './stand-in-edge.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A port nothing listens on: one the OS just handed out and took back. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('ladder (settings, errors, help, usage, models, admin)', () => {
  let edge: StandInEdge;
  let env: Record<string, string>;
  beforeAll(async () => {
    edge = await StandInEdge.start();
    env = { LADDER_BASE_URL: edge.url, LADDER_API_KEY: STAND_IN_KEY };
  });
  afterAll(() => edge.close());

  it('usage: a table by day and model with a total row; --from/--to become the query', async () => {
    edge.usage = UsageReport.parse({
      object: 'usage',
      tenant: 'tenant-1',
      data: [
        {
          day: '2025-06-01',
          model: 'ft:ladder-tiny:demo:adp-1',
          prompt_tokens: 1200,
          completion_tokens: 300,
          training_tokens: 0,
          requests: 4,
          cost_usd: 0.0015,
        },
        {
          day: '2025-06-01',
          model: BACKBONE,
          prompt_tokens: 0,
          completion_tokens: 0,
          training_tokens: 40960,
          requests: 1,
          cost_usd: 0.04,
        },
      ],
      total_cost_usd: 0.0415,
    });
    const run = await runCli(['usage', '--from', '2025-06-01', '--to', '2025-06-30'], { env });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      [
        'DAY         MODEL                      PROMPT  COMPLETION  TRAINING  REQUESTS     COST',
        '2025-06-01  ft:ladder-tiny:demo:adp-1   1,200         300         0         4  $0.0015',
        '2025-06-01  ladder-tiny                     0           0    40,960         1    $0.04',
        'total                                   1,200         300    40,960         5  $0.0415',
        '',
      ].join('\n'),
    );
    const query = edge.requestsTo('GET', '/v1/usage').at(-1)!.query;
    expect([query.get('start_date'), query.get('end_date')]).toEqual(['2025-06-01', '2025-06-30']);
    const bad = await runCli(['usage', '--from', 'June'], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("error: --from must be a day as YYYY-MM-DD, not 'June'");
  });

  it('models: list and delete', async () => {
    const list = await runCli(['models', 'list'], { env });
    expect(list.stdout).toMatch(
      new RegExp(`^ID\\s+KIND\\s+BACKBONE\\s+CREATED \\(UTC\\)\\n${BACKBONE}\\s+backbone`),
    );
    const refused = await runCli(['models', 'delete', BACKBONE], { env });
    expect(refused).toMatchObject({
      code: 1,
      stderr: 'error: A backbone cannot be deleted. (model_not_deletable)\n',
    });
  });

  it('admin: create a tenant and a key with the admin token; without one, says how to give it', async () => {
    const adminEnv = { LADDER_BASE_URL: edge.url, LADDER_ADMIN_TOKEN: STAND_IN_ADMIN_TOKEN };
    const tenant = await runCli(['admin', 'tenant', 'create', 'acme'], { env: adminEnv });
    expect(tenant.code).toBe(0);
    const tenantId = tenant.stdout.trim();
    expect(JSON.parse(edge.requestsTo('POST', '/admin/v1/tenants').at(-1)!.body)).toEqual({ name: 'acme' });
    const key = await runCli(['admin', 'key', 'create', tenantId, '--name', 'ci'], { env: adminEnv });
    expect(key.stdout).toBe('sk-new-secret\n');
    expect(key.stderr).toContain('it is not shown again');
    expect(edge.requests.at(-1)!.headers.get('authorization')).toBe(`Bearer ${STAND_IN_ADMIN_TOKEN}`);

    const missing = await runCli(['admin', 'tenant', 'create', 'acme'], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: no admin token: pass --admin-token or set LADDER_ADMIN_TOKEN/);
    const wrong = await runCli(['admin', 'tenant', 'create', 'acme', '--admin-token', 'nope'], { env });
    expect(wrong.stderr).toBe(
      'error: Admin routes need "Authorization: Bearer <admin token>". (invalid_api_key)\n',
    );
  });

  it('without an API key: says where one comes from, and sends nothing', async () => {
    const before = edge.requests.length;
    const run = await runCli(['models', 'list'], { env: { LADDER_BASE_URL: edge.url } });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /^error: no API key: pass --api-key or set LADDER_API_KEY .*\.data\/dev-tenant\.json/,
    );
    expect(edge.requests.length).toBe(before);
  });

  it('an API error prints as `error: <message> (<code>)`', async () => {
    const run = await runCli(['models', 'list', '--api-key', 'sk-wrong'], { env });
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: Incorrect or revoked API key. (invalid_api_key)\n',
    });
  });

  it('connection refused: a hint to run npm start', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const run = await runCli(['jobs', 'list', '--base-url', url], { env: { LADDER_API_KEY: STAND_IN_KEY } });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`error: cannot reach Ladder at ${url} (connection refused)`);
    expect(run.stderr).toContain('npm start');
  });

  it('reads .data/dev-tenant.json from the working directory up, but only sends its key to its edge', async () => {
    const project = mkdtempSync(join(tmpdir(), 'ladder-project-'));
    onTestFinished(() => rmSync(project, { recursive: true, force: true }));
    mkdirSync(join(project, '.data'));
    mkdirSync(join(project, 'sub', 'dir'), { recursive: true });
    writeFileSync(
      join(project, '.data', 'dev-tenant.json'),
      JSON.stringify({ base_url: edge.url, api_key: STAND_IN_KEY, tenant: 'tenant-1' }),
    );
    const run = await runCli(['models', 'list'], { cwd: join(project, 'sub', 'dir') });
    expect(run.code).toBe(0);
    expect(edge.requests.at(-1)!.headers.get('authorization')).toBe(`Bearer ${STAND_IN_KEY}`);

    const elsewhere = await runCli(['models', 'list', '--base-url', 'http://127.0.0.1:1'], {
      cwd: join(project, 'sub'),
    });
    expect(elsewhere.stderr).toMatch(/^error: no API key/);

    writeFileSync(join(project, '.data', 'dev-tenant.json'), JSON.stringify({ base_url: edge.url }));
    const broken = await runCli(['models', 'list'], { cwd: project });
    expect(broken.stderr).toMatch(/dev-tenant\.json: api_key: /);
  });

  it('help: the command list, a group, a command; a wrong command or option exits 2', async () => {
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    for (const usage of [
      'files upload <path.jsonl>',
      'jobs create --file <id|path>',
      'jobs watch <job-id>',
      'chat <model> [message...]',
      'usage',
      'admin key create <tenant>',
    ])
      expect(top.stdout).toContain(`\n  ${usage} `);
    expect((await runCli(['help', 'jobs'])).stdout).toMatch(/^Usage: ladder jobs <command> \[options\]/);
    const create = await runCli(['jobs', 'create', '-h']);
    expect(create.stdout).toMatch(/^Usage: ladder jobs create --file <id\|path> \[options\]\n/);
    expect(create.stdout).toContain('--method <supervised|lst|xladder>');
    const bare = await runCli([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('Usage: ladder <command>');
    expect(await runCli(['frobnicate'])).toMatchObject({
      code: 2,
      stderr: "error: unknown command 'frobnicate'\n(see: ladder --help)\n",
    });
    expect((await runCli(['jobs', 'list', '--nope'])).stderr).toBe(
      "error: Unknown option '--nope'\n(see: ladder jobs list --help)\n",
    );
  });

  it('the bin runs as a real process with the environment', async () => {
    const child = spawn(
      process.execPath,
      [join(root, 'cli', 'bin', 'ladder.mjs'), 'models', 'list', '--json'],
      {
        env: { ...process.env, ...env },
        cwd: tmpdir(),
      },
    );
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(JSON.parse(stdout).data[0].id).toBe(BACKBONE);
  });
});
