import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, describeSettings, loadSettings, loadStartSettings } from '../src/config/index.ts';

/** A fresh temp folder holding settings.conf with the given lines; removed after the test. */
function settingsFile(t: { after: (fn: () => void) => void }, ...lines: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'archenland-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'settings.conf');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** Asserts that loading throws a ConfigError and returns it for closer checks. */
function configError(load: () => unknown): ConfigError {
  try {
    load();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected loading to fail');
}

test('a missing default settings.conf means built-in defaults', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'archenland-config-'));
  const previous = process.cwd();
  process.chdir(dir);
  t.after(() => {
    process.chdir(previous);
    rmSync(dir, { recursive: true, force: true });
  });

  const server = loadSettings('server', { env: {} });
  assert.deepEqual(server, {
    ffmpeg_path: 'ffmpeg',
    port: 7411,
    web_port: 8080,
    bind: '0.0.0.0',
    data_dir: path.join(process.cwd(), 'archenland-data'),
    max_upload_mb: 4096,
    heartbeat_timeout_s: 30,
    frame_retries: 3,
    frame_timeout_s: 0,
    trust_loopback: true,
    public_hosts: [],
    queue_policy: 'fifo',
    video_streams: 2,
    progress_reports_per_second: 1000,
    tail_duplicates: true,
    serve_limit_mbps: 0,
    log_level: 'info',
    log_format: 'auto',
  });

  const worker = loadSettings('worker', { env: {} });
  assert.deepEqual(worker, {
    blender_path: 'blender',
    threads: 0,
    nice: 10,
    schedule_stop: 'finish',
    prewarm_blender: true,
    address: '127.0.0.1',
    port: 7411,
    web_port: 8080,
    cache_dir: path.join(process.cwd(), 'archenland-worker'),
    min_free_mb: 200,
    cache_max_gb: 20,
    tags: [],
    render_device: 'CPU',
    gpus: [],
    allow_scripts: false,
    tls: false,
    log_level: 'info',
    log_format: 'auto',
  });
});

test('a full valid server file is read as typed values', (t) => {
  const file = settingsFile(
    t,
    '# Archenland server',
    'ffmpeg_path = "/usr/bin/ffmpeg"',
    'port = 9411',
    'web_port = 9080',
    'bind = "127.0.0.1"',
    'data_dir = "/srv/archenland"',
    'max_upload_mb = 512',
    'token = "0123456789abcdef0123"',
    'heartbeat_timeout_s = 60',
    'frame_retries = 0',
    'frame_timeout_s = 3600',
    'trust_loopback = false',
    'queue_policy = "fair"',
    'video_streams = 1',
    'progress_reports_per_second = 500',
    'tail_duplicates = false',
    'serve_limit_mbps = 1000',
    'log_level = "debug"',
    'log_format = "json"',
  );
  assert.deepEqual(loadSettings('server', { file, env: {} }), {
    ffmpeg_path: '/usr/bin/ffmpeg',
    port: 9411,
    web_port: 9080,
    bind: '127.0.0.1',
    data_dir: path.resolve('/srv/archenland'),
    max_upload_mb: 512,
    token: '0123456789abcdef0123',
    heartbeat_timeout_s: 60,
    frame_retries: 0,
    frame_timeout_s: 3600,
    trust_loopback: false,
    public_hosts: [],
    queue_policy: 'fair',
    video_streams: 1,
    progress_reports_per_second: 500,
    tail_duplicates: false,
    serve_limit_mbps: 1000,
    log_level: 'debug',
    log_format: 'json',
  });
});

test('a full valid worker file is read as typed values', (t) => {
  const file = settingsFile(
    t,
    'blender_path = "/opt/blender/blender"',
    'threads = 8',
    'schedule = "Mon-Fri 18:00-08:00; Sat-Sun"',
    'schedule_stop = "now"',
    'prewarm_blender = false',
    'address = "farm.local"',
    'port = 9411',
    'web_port = 9080',
    'name = "render-01"',
    'cache_dir = "cache"',
    'token = "0123456789abcdef0123"',
    'peer_port = 7412',
    'log_level = "warn"',
  );
  assert.deepEqual(loadSettings('worker', { file, env: {} }), {
    blender_path: '/opt/blender/blender',
    threads: 8,
    nice: 10,
    schedule: 'Mon-Fri 18:00-08:00; Sat-Sun',
    schedule_stop: 'now',
    prewarm_blender: false,
    address: 'farm.local',
    port: 9411,
    web_port: 9080,
    name: 'render-01',
    cache_dir: path.join(path.dirname(file), 'cache'),
    min_free_mb: 200,
    cache_max_gb: 20,
    token: '0123456789abcdef0123',
    peer_port: 7412,
    tags: [],
    render_device: 'CPU',
    gpus: [],
    allow_scripts: false,
    tls: false,
    log_level: 'warn',
    log_format: 'auto',
  });
});

test('an unknown key is reported with its line and the known keys', (t) => {
  const file = settingsFile(t, 'web_port = 8080', '', 'prot = 7411');
  const err = configError(() => loadSettings('server', { file, env: {} }));
  assert.equal(err.line, 3);
  assert.equal(err.key, 'prot');
  assert.equal(err.file, file);
  assert.match(err.message, /settings\.conf:3: unknown key "prot" \(known keys: .*web_port.*\)/);
});

test('a key of the other process kind is pointed out', (t) => {
  const file = settingsFile(t, 'blender_path = "blender"');
  const err = configError(() => loadSettings('server', { file, env: {} }));
  assert.match(err.message, /settings\.conf:1: unknown key "blender_path" \(it is a worker setting; known keys: /);
});

test('a wrongly typed value is reported with its line, the expectation and the value', (t) => {
  const file = settingsFile(t, 'port = 7411', 'web_port = "abc"');
  const err = configError(() => loadSettings('server', { file, env: {} }));
  assert.equal(err.line, 2);
  assert.equal(err.key, 'web_port');
  assert.match(err.message, /settings\.conf:2: key "web_port": expected an integer between 1 and 65535, got "abc"$/);
});

test('an out-of-range port is rejected', (t) => {
  const file = settingsFile(t, 'log_level = "info"', 'port = 70000');
  const err = configError(() => loadSettings('worker', { file, env: {} }));
  assert.equal(err.line, 2);
  assert.match(err.message, /settings\.conf:2: key "port": expected an integer between 1 and 65535, got 70000$/);
});

test('other bad values name what is expected', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['log_level = "loud"', /expected one of fatal, error, warn, info, debug, trace, silent, got "loud"/],
    ['log_format = "pretty"', /expected one of auto, json, text, got "pretty"/],
    ['trust_loopback = "yes"', /expected true or false, got "yes"/],
    ['max_upload_mb = 0', /expected an integer of at least 1, got 0/],
    ['frame_retries = 1.5', /expected an integer between 0 and 100, got 1.5/],
    ['video_streams = -1', /expected an integer between 0 and 64, got -1/],
    ['progress_reports_per_second = 0', /expected an integer between 1 and 100000, got 0/],
    // The token is a secret: only its length shows up in the message.
    ['token = "short-secret"', /expected a string of at least 16 characters, got a 12-character string/],
  ];
  for (const [line, expected] of cases) {
    const file = settingsFile(t, line);
    const err = configError(() => loadSettings('server', { file, env: {} }));
    assert.match(err.message, expected);
    assert.doesNotMatch(err.message, /short-secret/);
  }
});

test('prewarm_blender must be a boolean, in the file and in the environment', (t) => {
  const file = settingsFile(t, 'prewarm_blender = "no"');
  const err = configError(() => loadSettings('worker', { file, env: {} }));
  assert.equal(err.line, 1);
  assert.match(err.message, /settings\.conf:1: key "prewarm_blender": expected true or false, got "no"$/);
  const off = loadSettings('worker', { file: settingsFile(t), env: { ARCHENLAND_PREWARM_BLENDER: 'false' } });
  assert.equal(off.prewarm_blender, false);
});

test('a TOML syntax error gives file and line', (t) => {
  const file = settingsFile(t, 'port = 7411', 'web_port = ', 'bind = "0.0.0.0"');
  const err = configError(() => loadSettings('server', { file, env: {} }));
  assert.equal(err.line, 2);
  assert.equal(err.file, file);
  assert.match(err.message, /settings\.conf:2: TOML syntax error/);
});

test('a table header is refused with its line', (t) => {
  const file = settingsFile(t, '# shared file', '[server]', 'port = 7411');
  const err = configError(() => loadSettings('server', { file, env: {} }));
  assert.equal(err.line, 2);
  assert.match(err.message, /settings\.conf:2: table headers like \[server\] are not supported/);
});

test('an explicitly named file that does not exist is an error', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'archenland-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'nope.conf');
  const err = configError(() => loadSettings('server', { file, env: {} }));
  assert.equal(err.file, file);
  assert.match(err.message, /nope\.conf: settings file not found/);
});

test('precedence: defaults < file < environment < flags', (t) => {
  const file = settingsFile(t, 'port = 1001', 'web_port = 1002', 'bind = "10.0.0.1"');
  const env = { ARCHENLAND_WEB_PORT: '2002', ARCHENLAND_BIND: '10.0.0.2' };

  const settings = loadSettings('server', { file, env, flags: { bind: '10.0.0.3', port: undefined } });
  assert.equal(settings.port, 1001, 'file beats default; an undefined flag is ignored');
  assert.equal(settings.web_port, 2002, 'environment beats file');
  assert.equal(settings.bind, '10.0.0.3', 'flag beats environment');
  assert.equal(settings.frame_retries, 3, 'default when nothing else sets it');
});

test('environment values are coerced to the setting type', (t) => {
  const file = settingsFile(t, 'trust_loopback = true');
  const settings = loadSettings('server', {
    file,
    env: {
      ARCHENLAND_PORT: '9000',
      ARCHENLAND_TRUST_LOOPBACK: '0',
      ARCHENLAND_TOKEN: 'a-token-of-sufficient-length',
      ARCHENLAND_LOG_LEVEL: 'debug',
      ARCHENLAND_FRAME_RETRIES: '', // empty counts as unset
      ARCHENLAND_BLENDER_PATH: '/ignored/for/server',
    },
  });
  assert.equal(settings.port, 9000);
  assert.equal(settings.trust_loopback, false);
  assert.equal(settings.token, 'a-token-of-sufficient-length');
  assert.equal(settings.log_level, 'debug');
  assert.equal(settings.frame_retries, 3);

  const worker = loadSettings('worker', { file: settingsFile(t), env: { ARCHENLAND_THREADS: ' 4 ' } });
  assert.equal(worker.threads, 4);
  for (const [raw, expected] of [['TRUE', true], ['1', true], ['false', false]] as const) {
    const server = loadSettings('server', { file, env: { ARCHENLAND_TRUST_LOOPBACK: raw } });
    assert.equal(server.trust_loopback, expected, raw);
  }
});

test('a bad environment value is an error naming the variable', (t) => {
  const file = settingsFile(t);
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ ARCHENLAND_WEB_PORT: 'abc' }, /^environment variable ARCHENLAND_WEB_PORT: expected an integer between 1 and 65535, got "abc"$/],
    [{ ARCHENLAND_PORT: '0x1F' }, /^environment variable ARCHENLAND_PORT: expected an integer .*, got "0x1F"$/],
    [{ ARCHENLAND_TRUST_LOOPBACK: 'yes' }, /^environment variable ARCHENLAND_TRUST_LOOPBACK: expected true or false, got "yes"$/],
  ];
  for (const [env, expected] of cases) {
    const err = configError(() => loadSettings('server', { file, env }));
    assert.match(err.message, expected);
    assert.equal(err.line, undefined);
  }
});

test('a bad file value is reported even when the environment overrides it', (t) => {
  const file = settingsFile(t, 'web_port = "abc"');
  const err = configError(() => loadSettings('server', { file, env: { ARCHENLAND_WEB_PORT: '9000' } }));
  assert.equal(err.line, 1);
});

test('bad or unknown flags are errors', (t) => {
  const file = settingsFile(t);
  const bad = configError(() => loadSettings('server', { file, env: {}, flags: { web_port: 0 } }));
  assert.match(bad.message, /^command-line flag --web-port: expected an integer between 1 and 65535, got 0$/);
  const unknown = configError(() => loadSettings('server', { file, env: {}, flags: { webPort: 9000 } }));
  assert.match(unknown.message, /^unknown command-line setting "webPort" \(known keys: /);
});

test('a relative data_dir from the file resolves against the file folder, otherwise the cwd', (t) => {
  const file = settingsFile(t, 'data_dir = "data/farm"');
  const fromFile = loadSettings('server', { file, env: {} });
  assert.equal(fromFile.data_dir, path.join(path.dirname(file), 'data', 'farm'));

  const fromEnv = loadSettings('server', { file, env: { ARCHENLAND_DATA_DIR: 'elsewhere' } });
  assert.equal(fromEnv.data_dir, path.join(process.cwd(), 'elsewhere'));

  const fromDefault = loadSettings('server', { file: settingsFile(t), env: {} });
  assert.equal(fromDefault.data_dir, path.join(process.cwd(), 'archenland-data'));
});

test('a settings file in a subfolder is shown relative to the cwd in messages', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'archenland-config-'));
  const previous = process.cwd();
  process.chdir(dir);
  t.after(() => {
    process.chdir(previous);
    rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync('conf');
  writeFileSync(path.join('conf', 'settings.conf'), 'port = "x"\n');
  const err = configError(() => loadSettings('server', { file: 'conf/settings.conf', env: {} }));
  assert.match(err.message, new RegExp(`^${path.join('conf', 'settings.conf')}:1: key "port"`));
  assert.equal(err.file, path.join(process.cwd(), 'conf', 'settings.conf'));
});

test('describeSettings lists every key with type, default and description', () => {
  const server = describeSettings('server');
  assert.deepEqual(
    server.map((s) => s.key),
    ['ffmpeg_path', 'port', 'web_port', 'bind', 'data_dir', 'max_upload_mb', 'token', 'heartbeat_timeout_s',
      'frame_retries', 'frame_timeout_s', 'trust_loopback', 'public_hosts', 'tls_cert', 'tls_key', 'queue_policy', 'video_streams', 'progress_reports_per_second', 'tail_duplicates', 'serve_limit_mbps', 'webhook_url', 'log_level', 'log_format'],
  );
  const webPort = server.find((s) => s.key === 'web_port');
  assert.deepEqual(webPort, {
    key: 'web_port',
    type: 'integer 1..65535',
    default: 8080,
    description: 'HTTP port of the web interface and API',
    env: 'ARCHENLAND_WEB_PORT',
  });
  assert.equal(server.find((s) => s.key === 'token')?.default, undefined);
  assert.equal(server.find((s) => s.key === 'trust_loopback')?.type, 'boolean');
  for (const setting of [...server, ...describeSettings('worker')]) assert.ok(setting.description, setting.key);
});

test('`start` reads the local worker\'s keys from the same settings.conf, as a single-machine user writes it', (t) => {
  const file = settingsFile(
    t,
    'web_port = 9080',
    'blender_path = "/opt/blender/blender"',
    'threads = 4',
    'nice = 15',
    'prewarm_blender = false',
    'name = "desk"',
    'cache_dir = "frames-cache"',
    'min_free_mb = 500',
    'allow_scripts = true',
  );
  const { server, localWorker } = loadStartSettings({ file, env: {} });
  assert.equal(server.web_port, 9080);
  assert.ok(!('blender_path' in server) && !('threads' in server), 'the server gets only its own keys');
  assert.deepEqual(localWorker, {
    blender_path: '/opt/blender/blender',
    threads: 4,
    nice: 15,
    prewarm_blender: false,
    name: 'desk',
    cache_dir: path.join(path.dirname(file), 'frames-cache'),
    min_free_mb: 500,
    allow_scripts: true,
  });
});

test('`start` passes on only the worker keys given, from the file, the environment or a flag, never their defaults', (t) => {
  const file = settingsFile(t, 'threads = 2');
  const { localWorker } = loadStartSettings({ file, env: { ARCHENLAND_BLENDER_PATH: '/usr/bin/blender' }, flags: { name: 'from-flag' } });
  assert.deepEqual(localWorker, { threads: 2, blender_path: '/usr/bin/blender', name: 'from-flag' });
  assert.deepEqual(loadStartSettings({ file: false, env: {} }).localWorker, {}, 'nothing given: the worker keeps its own defaults');
});

test('`start` checks the local worker\'s values with their line, and refuses connection keys it sets itself', (t) => {
  const bad = configError(() => loadStartSettings({ file: settingsFile(t, 'web_port = 9080', 'threads = -1'), env: {} }));
  assert.match(bad.message, /settings\.conf:2: key "threads": expected an integer between 0 and 1024, got -1/);
  const rude = configError(() => loadStartSettings({ file: settingsFile(t, 'nice = -5'), env: {} }));
  assert.match(rude.message, /settings\.conf:1: key "nice": expected an integer between 0 and 19, got -5/);
  const connection = configError(() => loadStartSettings({ file: settingsFile(t, 'address = "farm.local"'), env: {} }));
  assert.equal(connection.line, 1);
  assert.match(connection.message, /unknown key "address" \(`archenland start` connects its local worker to this server by itself/);
  const server = configError(() => loadSettings('server', { file: settingsFile(t, 'threads = 4'), env: {} }));
  assert.match(server.message, /it is a worker setting/, '`archenland server` alone still refuses worker keys');
});

test('describeSettings(\'start\') lists the server\'s keys and the local worker\'s', () => {
  const keys = describeSettings('start').map((s) => s.key);
  for (const key of ['web_port', 'data_dir', 'blender_path', 'threads', 'name', 'cache_dir', 'allow_scripts']) assert.ok(keys.includes(key), key);
  for (const key of ['address', 'tls_fingerprint']) assert.ok(!keys.includes(key), key);
});

test('a schedule that cannot be read is reported with its line and what is wrong in it', (t) => {
  const file = settingsFile(t, 'threads = 2', 'schedule = "Mon-Fri 6pm-8am"');
  const err = configError(() => loadSettings('worker', { file, env: {} }));
  assert.equal(err.line, 2);
  assert.match(err.message, /settings\.conf:2: key "schedule": not a schedule like "Mon-Fri 18:00-08:00; Sat-Sun": "Mon-Fri 6pm-8am": "6pm-8am" is not a time range like 18:00-08:00$/);
  const fromEnv = configError(() => loadSettings('worker', { file: false, env: { ARCHENLAND_SCHEDULE: 'Someday' } }));
  assert.match(fromEnv.message, /environment variable ARCHENLAND_SCHEDULE: not a schedule .*unknown day "someday"/);
  const stop = configError(() => loadSettings('worker', { file: settingsFile(t, 'schedule_stop = "later"'), env: {} }));
  assert.match(stop.message, /expected one of finish, now, got "later"/);
});

test('tags are a list of simple names, in the file and in the environment (comma-separated)', (t) => {
  assert.deepEqual(loadSettings('worker', { file: settingsFile(t, 'tags = ["gpu", "Room-2"]'), env: {} }).tags, ['gpu', 'room-2']);
  assert.deepEqual(loadSettings('worker', { file: false, env: { ARCHENLAND_TAGS: 'gpu, room-2' } }).tags, ['gpu', 'room-2']);
  const bad = configError(() => loadSettings('worker', { file: settingsFile(t, 'tags = ["gpu", "room 2"]'), env: {} }));
  assert.match(bad.message, /settings\.conf:1: key "tags": "room 2": a tag is up to 32 letters, digits/);
  assert.deepEqual(loadStartSettings({ file: settingsFile(t, 'tags = ["desk"]'), env: {} }).localWorker, { tags: ['desk'] });
});

test('render_device names a backend; gpus is a list of indices, in the file, the environment and flags', (t) => {
  const file = loadSettings('worker', { file: settingsFile(t, 'render_device = "CUDA"\ngpus = [0, 1]'), env: {} });
  assert.deepEqual([file.render_device, file.gpus], ['CUDA', [0, 1]]);
  assert.deepEqual(loadSettings('worker', { file: false, env: { ARCHENLAND_GPUS: '1, 2' } }).gpus, [1, 2]);
  assert.deepEqual(loadSettings('worker', { file: false, env: {}, flags: { gpus: [1] } }).gpus, [1]);
  assert.match(configError(() => loadSettings('worker', { file: false, env: { ARCHENLAND_GPUS: 'first' } })).message, /ARCHENLAND_GPUS/);
  assert.match(configError(() => loadSettings('worker', { file: settingsFile(t, 'render_device = "GPU"'), env: {} })).message, /expected one of CPU, CUDA, OPTIX, HIP, ONEAPI, METAL/);
});

test('a worker names several Blenders: blender_path as a list, or a [blenders] table from version to path', (t) => {
  const list = settingsFile(t, 'blender_path = ["/opt/blender-4.2/blender", "/opt/blender-3.6/blender"]');
  assert.deepEqual(loadSettings('worker', { file: list, env: {} }).blender_path, ['/opt/blender-4.2/blender', '/opt/blender-3.6/blender']);
  const table = settingsFile(t, '[blenders]', '"4.2" = "/opt/blender-4.2/blender"', '"3.6.5" = "/opt/blender-3.6/blender"');
  const settings = loadSettings('worker', { file: table, env: {} });
  assert.deepEqual(settings.blenders, { '4.2': '/opt/blender-4.2/blender', '3.6.5': '/opt/blender-3.6/blender' });
  assert.equal(settings.blender_path, 'blender', 'the default installation stays');
  // `archenland start` hands the table to its local worker.
  const start = settingsFile(t, 'web_port = 9001', '[blenders]', '"4.2" = "/opt/blender-4.2/blender"');
  assert.deepEqual(loadStartSettings({ file: start, env: {} }).localWorker, { blenders: { '4.2': '/opt/blender-4.2/blender' } });
  // One path from the environment, as before.
  assert.equal(loadSettings('worker', { env: { ARCHENLAND_BLENDER_PATH: '/usr/local/bin/blender' } }).blender_path, '/usr/local/bin/blender');

  const badKey = configError(() => loadSettings('worker', { file: settingsFile(t, '[blenders]', 'latest = "/opt/blender/blender"'), env: {} }));
  assert.match(badKey.message, /blenders/);
  assert.match(badKey.message, /"latest" is not a Blender version: name each installation by its version, like "4\.2"/);
  const emptyList = configError(() => loadSettings('worker', { file: settingsFile(t, 'blender_path = []'), env: {} }));
  assert.match(emptyList.message, /blender_path/);
});
