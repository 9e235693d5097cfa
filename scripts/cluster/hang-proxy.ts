/**
 * A TCP proxy a fault test controls: forwards to `target` until `hang()`, after which every byte
 * in either direction is held and new connections are accepted but not forwarded — the peer
 * neither answers nor refuses, as with a network partition or a frozen server. `restore()` lets
 * everything through again (held data included). `drop()` is the other kind of outage, a node gone:
 * open connections are reset and new ones closed at once (the client sees UNAVAILABLE at once)
 * until `restore()`.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface HangProxy {
  port: number;
  hang(): void;
  drop(): void;
  /**
   * The answers lost, the requests not: for `ms`, what the open connections' server sends is held
   * (what the client sends still goes through), then those connections are reset unanswered, as
   * when a node dies after doing the work and before replying. New connections pass meanwhile.
   */
  loseReplies(ms: number): Promise<void>;
  restore(): void;
  close(): Promise<void>;
}

export async function startHangProxy(target: { host: string; port: number }, port = 0): Promise<HangProxy> {
  let hanging = false;
  let dropping = false;
  const pairs = new Set<[Socket, Socket | undefined]>();
  const waiting: (() => void)[] = [];

  const link = (client: Socket) => {
    const upstream = createConnection(target.port, target.host);
    const pair: [Socket, Socket | undefined] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
    if (hanging) {
      client.pause();
      upstream.pause();
    }
  };

  const server: Server = createServer((client) => {
    if (dropping) {
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    if (hanging) {
      client.pause();
      client.on('error', () => client.destroy());
      waiting.push(() => {
        if (!client.destroyed) {
          link(client);
          client.resume();
        }
      });
      return;
    }
    link(client);
  });
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    hang() {
      hanging = true;
      for (const [a, b] of pairs) {
        a.pause();
        b?.pause();
      }
    },
    drop() {
      dropping = true;
      for (const pair of pairs) {
        pair[0].resetAndDestroy();
        pair[1]?.destroy();
        pairs.delete(pair);
      }
    },
    async loseReplies(ms) {
      const open = [...pairs];
      for (const [client, upstream] of open) {
        upstream?.unpipe(client);
        upstream?.pause();
      }
      await new Promise((done) => setTimeout(done, ms));
      for (const pair of open) {
        pair[0].resetAndDestroy();
        pair[1]?.destroy();
        pairs.delete(pair);
      }
    },
    restore() {
      hanging = false;
      dropping = false;
      for (const [a, b] of pairs) {
        a.resume();
        b?.resume();
      }
      for (const go of waiting.splice(0)) go();
    },
    async close() {
      for (const [a, b] of pairs) {
        a.destroy();
        b?.destroy();
      }
      await new Promise((done) => server.close(done));
    },
  };
}
