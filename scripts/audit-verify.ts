/**
 * `npm run audit:verify [-- --head <jws>]... [--keys <jwks file or URL>]`: walks the whole audit
 * log (DATABASE_URL) in seq order, recomputing each row's hash and its link to the previous row of
 * its chain — the pre-sharding chain, then every shard's — then checks the log against every
 * signed head: the ones recorded in audit_heads and any pinned elsewhere and given with --head
 * (e.g. fetched earlier from GET /v1/audit/head). A version 2 head's Merkle root is recomputed from
 * its shard heads, and each shard head must still be in the log. Heads are verified against the
 * audit keys, public keys only: --keys (a JWKS file or a URL), else the broker's published JWKS at
 * <BROKER_PUBLIC_URL>/v1/audit/keys. A verifier never needs, nor reads, the audit private key.
 * The walk, the heads and their check read one snapshot (a REPEATABLE READ READ ONLY transaction,
 * db/audit-query.ts withAuditSnapshot): on a live log, rows and heads committed while it runs are
 * left for the next run instead of showing up half-way through the walk as missing rows.
 *
 * `npm run audit:verify -- --proof <file> [--keys …]`: checks one inclusion proof from
 * GET /v1/audit/proof instead (lib/audit-proof.ts), with no database: the row's hash, the chain to
 * its shard's head, the audit path to the signed root, the head's signature.
 *
 * Exit 0 with a summary when everything agrees; 1 naming the first broken row or contradicted
 * head; 2 when the check itself could not run.
 */
import { readFile } from 'node:fs/promises';
import type { JSONWebKeySet } from 'jose';
import { allAuditHeads } from '../db/audit-heads';
import { checkAuditHeads, verifyAuditChain, withAuditSnapshot, type HeadToCheck } from '../db/audit-query';
import { createPool, type Queryable } from '../db/pool';
import { AuditHeadError, verifyAuditHead } from '../lib/audit-head';
import { AuditProofError, verifyAuditProof } from '../lib/audit-proof';
import { loadConfig, type Config } from '../lib/config';

function parseArgs(argv: string[]): { heads: string[]; keys?: string; proof?: string } {
  const heads: string[] = [];
  let keys: string | undefined;
  let proof: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if ((a === '--head' || a === '--keys' || a === '--proof') && next === undefined) throw new Error(`${a} needs a value`);
    if (a === '--head') heads.push(argv[++i] as string);
    else if (a === '--keys') keys = argv[++i];
    else if (a === '--proof') proof = argv[++i];
    else throw new Error(`unknown argument ${a} (usage: audit:verify [--head <jws>]... [--keys <jwks file or URL>] | audit:verify --proof <file> [--keys …])`);
  }
  return { heads, keys, proof };
}

/** --proof: checks one inclusion proof (GET /v1/audit/proof, saved to a file) offline: no database. */
async function verifyProofFile(file: string, keys: JSONWebKeySet): Promise<number> {
  let input: unknown;
  try {
    input = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    console.error(`audit proof REFUSED (${file}): not readable JSON: ${(e as Error).message}`);
    return 1;
  }
  try {
    const r = await verifyAuditProof(input, keys);
    console.log(`audit proof holds: row seq ${r.seq} (shard ${r.shard}) is under the head signed at ${r.headAt}, root ${r.root}`);
    return 0;
  } catch (e) {
    if (!(e instanceof AuditProofError)) throw e;
    console.error(`audit proof REFUSED (${file}): ${e.message}`);
    return 1;
  }
}

/**
 * The audit public keys: --keys (a JWKS file or URL), else the broker's published /v1/audit/keys.
 * A JWK holding a private part is refused: what verifies heads must be shareable with anyone.
 */
async function auditKeys(config: Config, given: string | undefined): Promise<JSONWebKeySet> {
  const source = given ?? `${config.publicUrl}/v1/audit/keys`;
  let jwks: JSONWebKeySet;
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source).catch((e: unknown) => {
      throw new Error(`cannot fetch the audit keys from ${source} (${(e as Error).message}); give --keys <JWKS file or URL> (the broker's /v1/audit/keys)`);
    });
    if (!res.ok) throw new Error(`${source} answered ${res.status}; give --keys <JWKS file or URL> (the broker's /v1/audit/keys)`);
    jwks = (await res.json()) as JSONWebKeySet;
  } else {
    jwks = JSON.parse(await readFile(source, 'utf8')) as JSONWebKeySet;
  }
  if (!Array.isArray(jwks.keys)) throw new Error(`${source} is not a JWKS ({"keys": [...]})`);
  if (jwks.keys.some((k) => 'd' in k)) throw new Error(`${source} holds a private key; give the public JWKS (GET /v1/audit/keys)`);
  return jwks;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const config = loadConfig(process.env);
  if (args.proof) return verifyProofFile(args.proof, await auditKeys(config, args.keys));
  if (!config.DATABASE_URL) {
    console.error('audit:verify needs DATABASE_URL (the database whose audit_log to check)');
    return 2;
  }
  const db = createPool(config.DATABASE_URL, 1);
  try {
    // The walk, the heads and their check in one snapshot: rows and heads committed meanwhile are for the next run.
    return await withAuditSnapshot(db, (q) => verifyInSnapshot(q, config, args));
  } finally {
    await db.end();
  }
}

/** The chains, then every signed head against them, all read through `q` (one REPEATABLE READ snapshot). */
async function verifyInSnapshot(q: Queryable, config: Config, args: { heads: string[]; keys?: string }): Promise<number> {
  const verdict = await verifyAuditChain(q);
  if (!verdict.ok) {
    const at = verdict.shard === null ? `seq ${verdict.brokenSeq}` : `shard ${verdict.shard}, seq ${verdict.brokenSeq}`;
    console.error(`audit chain BROKEN at ${at}: ${verdict.reason} (${verdict.rows} rows before it verified)`);
    return 1;
  }
  const keys = await auditKeys(config, args.keys);
  const heads: HeadToCheck[] = [];
  const sources: { jws: string; source: string; root?: string | null }[] = [
    ...(await allAuditHeads(q)).map((h) => ({
      jws: h.jws,
      source: `audit_heads seq ${h.seq}${h.root ? ` root ${h.root.slice(0, 16)}…` : ''}`,
      root: h.root,
    })),
    ...args.heads.map((jws) => ({ jws, source: '--head' })),
  ];
  for (const { jws, source, root } of sources) {
    try {
      const s = await verifyAuditHead(jws, keys);
      if (root !== undefined && root !== (s.root ?? null)) throw new AuditHeadError(`the row's root ${String(root)} is not the signed root ${String(s.root)}`);
      heads.push({ seq: s.seq, hash: s.hash, shards: s.shards, at: s.at, source });
    } catch (e) {
      if (!(e instanceof AuditHeadError)) throw e;
      console.error(`audit head REFUSED (${source}): ${e.message}`);
      return 1;
    }
  }
  const checked = await checkAuditHeads(q, heads, verdict);
  if (!checked.ok) {
    console.error(`audit log CONTRADICTS a signed head${checked.shard === null ? '' : ` (shard ${checked.shard})`}: ${checked.reason}`);
    return 1;
  }
  const used = verdict.shardHeads.filter((h) => h.seq !== '0').length;
  console.log(
    `audit chain intact: ${verdict.rows} rows in ${used} of ${verdict.shardHeads.length} shard chains, head seq ${verdict.headSeq ?? '(none)'} hash ${verdict.headHash}; ` +
      `${checked.checked} signed heads agree${checked.latestSeq ? ` (latest at seq ${checked.latestSeq})` : ''}`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`audit:verify could not run: ${(e as Error).message}`);
    process.exit(2);
  },
);
