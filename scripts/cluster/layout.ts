/**
 * Every port `npm run cluster` uses, derived from one base (CLUSTER_PORT_BASE, default 27000) so a
 * second cluster, a dev stack (7233/8233/8091) or another checkout can run beside it.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';

export const NODES = 2;
export const APIS = 2;
export const WORKERS = 2;

export interface NodePorts {
  frontend: number;
  frontendHttp: number;
  history: number;
  matching: number;
  worker: number;
  membership: { frontend: number; history: number; matching: number; worker: number };
  metrics: number;
}

export interface Layout {
  base: number;
  /** nginx, TLS: the only public port. */
  https: number;
  /** nginx, plain HTTP on loopback: ops routes (/codec, /readyz details, /_dev) for operators and the UI. */
  ops: number;
  /** HAProxy TCP load balancer in front of the Temporal frontends: what workers and APIs dial. */
  temporalLb: number;
  /** HAProxy statistics page. */
  haproxyStats: number;
  temporalUi: number;
  apis: number[];
  /** Each API process's ops listener (loopback): GET /metrics. */
  apiMetrics: number[];
  /** Each worker process's ops listener (loopback): GET /metrics (process, STS, SES, audit). */
  workerMetrics: number[];
  /** Each worker's Temporal SDK exporter (loopback): GET /metrics (temporal_*). */
  workerSdkMetrics: number[];
  nodes: NodePorts[];
  ses: number;
  sts: number;
  tee: number;
}

export function layout(base: number): Layout {
  const node = (i: number): NodePorts => {
    const o = base + 1000 * (i + 1);
    return {
      frontend: o + 233,
      history: o + 234,
      matching: o + 235,
      worker: o + 239,
      frontendHttp: o + 243,
      membership: { frontend: o + 933, history: o + 934, matching: o + 935, worker: o + 939 },
      metrics: o + 900,
    };
  };
  return {
    base,
    https: base + 443,
    ops: base + 80,
    temporalLb: base + 233,
    haproxyStats: base + 234,
    temporalUi: base + 333,
    apis: Array.from({ length: APIS }, (_, i) => base + 91 + i),
    apiMetrics: Array.from({ length: APIS }, (_, i) => base + 464 + i),
    workerMetrics: Array.from({ length: WORKERS }, (_, i) => base + 474 + i),
    workerSdkMetrics: Array.from({ length: WORKERS }, (_, i) => base + 484 + i),
    nodes: Array.from({ length: NODES }, (_, i) => node(i)),
    ses: base + 25,
    sts: base + 26,
    tee: base + 93,
  };
}

export function allPorts(l: Layout): number[] {
  return [
    l.https,
    l.ops,
    l.temporalLb,
    l.haproxyStats,
    l.temporalUi,
    ...l.apis,
    ...l.apiMetrics,
    ...l.workerMetrics,
    ...l.workerSdkMetrics,
    l.ses,
    l.sts,
    l.tee,
    ...l.nodes.flatMap((n) => [n.frontend, n.frontendHttp, n.history, n.matching, n.worker, n.metrics, ...Object.values(n.membership)]),
  ];
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const srv = createServer();
    srv.once('error', () => done(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => done(true)));
  });
}

/** The ports of the layout already taken by something else. */
export async function busyPorts(l: Layout): Promise<number[]> {
  const busy: number[] = [];
  for (const p of allPorts(l)) if (!(await portFree(p))) busy.push(p);
  return busy;
}

/**
 * The broker's database when DATABASE_URL is not set: one per data directory. The generated keys
 * (session, audit, payload) live in the data directory, so rows signed or encrypted with them —
 * audit heads above all — must not meet another directory's keys: a fresh clone gets a fresh
 * database instead of one whose signed heads it cannot verify.
 */
export function defaultClusterDatabaseUrl(dataDir: string): string {
  return `postgres://postgres@127.0.0.1:5432/agentkeys_cluster_${dataDirTag(dataDir)}`;
}

/**
 * The Temporal store of the cluster for `dataDir` (visibility: `<name>_visibility`): one per data
 * directory, like the broker's database. Its histories are encoded with that directory's payload key;
 * a cluster on another directory sharing them found runs it could never decode.
 */
export function defaultClusterTemporalDatabaseUrl(dataDir: string): string {
  return `postgres://postgres@127.0.0.1:5432/agentkeys_temporal_${dataDirTag(dataDir)}`;
}

function dataDirTag(dataDir: string): string {
  return createHash('sha256').update(dataDir).digest('hex').slice(0, 10);
}
