/**
 * nginx (TLS, public routes, ops listener) and HAProxy (TCP balancer in front of the Temporal
 * frontends) for `npm run cluster`: renders the production configs in deploy/ with the local
 * ports and paths, generates a self-signed certificate once, and runs both in the foreground.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Layout } from './layout';
import { logTail, startProcess, type Managed } from './processes';

const execFileAsync = promisify(execFile);
const DEPLOY = resolve(__dirname, '..', '..', 'deploy');

async function which(name: string): Promise<string | undefined> {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin']) {
    if (!dir) continue;
    try {
      await access(join(dir, name), fsConstants.X_OK);
      return join(dir, name);
    } catch {
      // next
    }
  }
  return undefined;
}

/** nginx and haproxy binaries; throws with install instructions when one is missing. */
export async function findProxies(): Promise<{ nginx: string; haproxy: string }> {
  const nginx = process.env.NGINX_PATH || (await which('nginx'));
  const haproxy = process.env.HAPROXY_PATH || (await which('haproxy'));
  const missing = [!nginx && 'nginx', !haproxy && 'haproxy'].filter(Boolean) as string[];
  if (missing.length > 0 || !nginx || !haproxy) {
    throw new Error(
      `npm run cluster needs ${missing.join(' and ')} (not found on PATH).\n` +
        `  Debian/Ubuntu: sudo apt-get install -y ${missing.join(' ')}\n` +
        `  Fedora/RHEL:   sudo dnf install -y ${missing.join(' ')}\n` +
        `  macOS:         brew install ${missing.join(' ')}\n` +
        '  or set NGINX_PATH / HAPROXY_PATH to the binaries. The packaged services need not run: the cluster starts its own.',
    );
  }
  return { nginx, haproxy };
}

function render(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{([A-Z_]+)\}\}/g, (m, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`no value for ${m} in a deploy/ template`);
    return v;
  });
}

/** A self-signed certificate for localhost / 127.0.0.1, generated once under `dir`. */
export async function ensureSelfSignedCert(dir: string, log: (l: string) => void): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'tls-cert.pem');
  const key = join(dir, 'tls-key.pem');
  try {
    await access(cert);
    await access(key);
    return { cert, key };
  } catch {
    // generate below
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await execFileAsync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '365',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  log(`generated a self-signed TLS certificate: ${cert}`);
  return { cert, key };
}

export function waitForPort(port: number, proc: Managed, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((done, fail) => {
    const attempt = () => {
      const reason = proc.exitReason();
      if (reason !== undefined) {
        void logTail(proc.log).then((t) => fail(new Error(`${proc.name} stopped (${reason}); ${proc.log}:\n${t}`)));
        return;
      }
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        done();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) {
          void logTail(proc.log).then((t) => fail(new Error(`${proc.name} did not listen on ${port} within ${timeoutMs / 1000} s; ${proc.log}:\n${t}`)));
        } else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

export async function startHaproxy(o: { bin: string; l: Layout; dir: string; logDir: string }): Promise<Managed> {
  const template = await readFile(join(DEPLOY, 'haproxy', 'temporal-frontend.cfg'), 'utf8');
  const cfg = render(template, {
    BIND: `127.0.0.1:${o.l.temporalLb}`,
    STATS_BIND: `127.0.0.1:${o.l.haproxyStats}`,
    SERVERS: o.l.nodes.map((n, i) => `    server node${i + 1} 127.0.0.1:${n.frontend} check`).join('\n'),
  });
  await mkdir(o.dir, { recursive: true });
  const file = join(o.dir, 'haproxy.cfg');
  await writeFile(file, cfg);
  await execFileAsync(o.bin, ['-c', '-q', '-f', file]).catch((e: { stderr?: string }) => {
    throw new Error(`haproxy rejected ${file}:\n${e.stderr ?? ''}`);
  });
  const proc = startProcess({ name: 'haproxy', command: o.bin, args: ['-db', '-f', file], logDir: o.logDir });
  await waitForPort(o.l.temporalLb, proc);
  return proc;
}

export async function startNginx(o: {
  bin: string;
  l: Layout;
  dir: string;
  logDir: string;
  cert: string;
  key: string;
  bodyLimit: number;
  /** Supplied to the Temporal UI's codec calls on the ops listener; undefined = the UI gets 401. */
  opsToken?: string;
}): Promise<Managed> {
  const template = await readFile(join(DEPLOY, 'nginx', 'agentkeys-broker.conf'), 'utf8');
  const site = render(template, {
    API_SERVERS: o.l.apis.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=5s;`).join('\n'),
    PUBLIC_LISTEN: `127.0.0.1:${o.l.https}`,
    SERVER_NAME: 'localhost',
    TLS_CERT: o.cert,
    TLS_KEY: o.key,
    ACCESS_LOG: join(o.logDir, 'nginx-access.log'),
    ERROR_LOG: join(o.logDir, 'nginx-error.log'),
    BODY_LIMIT: String(o.bodyLimit),
    // Here the TEE fixture runs on this host; in production: the TEE workers' addresses.
    TEE_ALLOW: '        allow 127.0.0.1;',
    OPS_LISTEN: `127.0.0.1:${o.l.ops}`,
    OPS_ALLOW: '    allow 127.0.0.1;',
    // Here the operator is whoever can reach the loopback-only ops listener of this machine (the
    // file below is 0600 in a 0700 directory). In production: authenticate first (docs/deploy.md).
    CODEC_AUTH: o.opsToken ? `        proxy_set_header Authorization "Bearer ${o.opsToken}";` : '        # no ops token: the UI cannot decode',
  });
  const tmp = join(o.dir, 'tmp');
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  await mkdir(tmp, { recursive: true });
  await writeFile(join(o.dir, 'agentkeys-broker.conf'), site, { mode: 0o600 });
  // The process-level part a distribution's /etc/nginx/nginx.conf has; here everything stays in the data dir.
  const main = join(o.dir, 'nginx.conf');
  await writeFile(
    main,
    [
      '# Generated by npm run cluster; the site itself is deploy/nginx/agentkeys-broker.conf.',
      'worker_processes 1;',
      'daemon off;',
      `pid ${join(o.dir, 'nginx.pid')};`,
      `error_log ${join(o.logDir, 'nginx-error.log')} warn;`,
      'events { worker_connections 1024; }',
      'http {',
      `  client_body_temp_path ${join(tmp, 'body')};`,
      `  proxy_temp_path ${join(tmp, 'proxy')};`,
      `  fastcgi_temp_path ${join(tmp, 'fastcgi')};`,
      `  uwsgi_temp_path ${join(tmp, 'uwsgi')};`,
      `  scgi_temp_path ${join(tmp, 'scgi')};`,
      `  include ${join(o.dir, 'agentkeys-broker.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  const args = ['-e', join(o.logDir, 'nginx-error.log'), '-p', o.dir, '-c', main];
  await execFileAsync(o.bin, [...args, '-t', '-q']).catch((e: { stderr?: string }) => {
    throw new Error(`nginx rejected ${main}:\n${e.stderr ?? ''}`);
  });
  const proc = startProcess({ name: 'nginx', command: o.bin, args, logDir: o.logDir });
  await waitForPort(o.l.https, proc);
  return proc;
}
