import { log } from '@temporalio/activity';
import { readAuditSettings } from '../db/audit';
import { currentAuditHeads, latestAuditHead, recordAuditHead, type CurrentHeads } from '../db/audit-heads';
import { auditRowsAt, withAuditSnapshot } from '../db/audit-query';
import { extendsSignedHead, pinnedSeqs, type SignedPins } from '../lib/audit-extends';
import { auditHeadKid, AuditHeadError, readAuditHeadUnverified, signAuditHead, verifyAuditHead } from '../lib/audit-head';
import { shardHeadsRoot } from '../lib/audit-merkle';
import type { JWK } from 'jose';
import type { SigningKey } from '../lib/signing-key';
import type { AnchorInput, AnchorResult } from '../workflows/audit-anchor.definitions';
import { failureOf } from '../workflows/failures';
import type { ActivityDeps } from './deps';

/** A head signed before, which the log must still extend, and where it was read. */
interface Earlier {
  pins: SignedPins;
  at: string;
  source: string;
}

type Refusal = { shard: number | null; reason: string; source: string; at: string | null };

export function createAuditAnchorActivities(deps: ActivityDeps) {
  return {
    /**
     * Signs the log's current heads — a version 2 head: the Merkle root over every shard's head —
     * with the audit key and records it in audit_heads. Idempotent: a head already signed (an
     * unchanged log, or a retry) is returned as first recorded.
     *
     * Refuses to sign (a non-retryable failure, and an error log naming the shard) unless the log
     * still extends the heads signed before (lib/audit-extends.ts): `previous`, the head the
     * Schedule's previous run returned (Temporal keeps it, outside the database a rewrite would
     * touch), and the newest head in audit_heads. The first is what stops a database login that
     * rewrote a shard and deleted the heads after it from getting the forgery signed; the second
     * covers a run with no previous one (the first after the Schedule is created, a manual run).
     * Everything read in one snapshot, so the check and the signed heads see the same log.
     */
    async anchorAuditHead(input: AnchorInput = {}): Promise<AnchorResult> {
      const key = deps.secrets.auditKey;
      const read = await withAuditSnapshot(deps.db, async (q): Promise<{ head: CurrentHeads | null } | { refused: Refusal }> => {
        const earlier: Earlier[] = [];
        const fromTemporal = input.previous?.jws;
        if (fromTemporal) {
          const e = await earlierHead(fromTemporal, key, deps.secrets.retiredAuditKeys, 'the previous anchor run', true);
          if ('refused' in e) return e;
          if (e.head) earlier.push(e.head);
        }
        const recorded = await latestAuditHead(q);
        if (recorded) {
          const e = await earlierHead(recorded.jws, key, deps.secrets.retiredAuditKeys, `audit_heads (seq ${recorded.seq})`, false);
          if ('refused' in e) return e;
          if (e.head) earlier.push(e.head);
        }
        const head = await currentAuditHeads(q);
        if (earlier.length === 0) return { head };
        const { genesis_hash } = await readAuditSettings(q);
        const rows = new Map((await auditRowsAt(q, [...new Set(earlier.flatMap((e) => pinnedSeqs(e.pins)))])).map((r) => [r.seq, r]));
        for (const e of earlier) {
          const verdict = extendsSignedHead(e.pins, { shards: head?.shards ?? null, genesisHash: genesis_hash, rows });
          if (!verdict.ok) return { refused: { shard: verdict.shard, reason: verdict.reason, source: e.source, at: e.at } };
        }
        return { head };
      });
      if ('refused' in read) {
        const r = read.refused;
        const message =
          `audit anchor REFUSED to sign${r.shard === null ? '' : ` (shard ${r.shard})`}: ${r.reason} — against the head signed${r.at ? ` at ${r.at}` : ''} ` +
          `(${r.source}), which every new head must extend. Nothing was signed; run \`npm run audit:verify\` and treat it as tampering until explained (docs/operations.md).`;
        log.error(message, { shard: r.shard, source: r.source, reason: r.reason });
        throw failureOf('audit_error', message);
      }
      const head = read.head;
      if (!head) return null;
      const at = new Date(deps.now());
      const root = shardHeadsRoot(head.shards);
      const jws = await signAuditHead(key, {
        v: 2,
        seq: head.seq,
        hash: head.hash,
        root,
        shards: head.shards,
        at: at.toISOString(),
        iss: deps.config.publicUrl,
      });
      const row = await recordAuditHead(deps.db, {
        seq: head.seq,
        hash: head.hash,
        signed_at: at,
        kid: key.kid,
        jws,
        version: 2,
        root,
        shard_heads: head.shards,
      });
      return {
        seq: row.seq,
        hash: row.hash,
        signed_at: row.signed_at.toISOString(),
        kid: row.kid,
        jws: row.jws,
        version: row.version,
        root: row.root ?? undefined,
      };
    },
  };
}

/**
 * An earlier head's statement. Signed by the current audit key or one retired by a rotation
 * (BROKER_AUDIT_KEYS_RETIRED_PATH): verified, and refused when it does not verify. Signed by a key
 * the broker does not know: from Temporal, read as it is (the database cannot write it); from
 * audit_heads, which the database login can write, skipped with a warning until the current key
 * has signed a head.
 */
async function earlierHead(
  jws: string,
  key: SigningKey,
  retired: JWK[],
  source: string,
  trustedSource: boolean,
): Promise<{ head: Earlier | null } | { refused: Refusal }> {
  try {
    let s;
    const known = [key.publicJwk, ...retired];
    const kid = auditHeadKid(jws);
    if (known.some((k) => k.kid === kid)) {
      s = await verifyAuditHead(jws, { keys: known });
    } else if (trustedSource) {
      s = readAuditHeadUnverified(jws);
    } else {
      log.warn(
        'the newest head in audit_heads is signed by a key that is neither the audit key nor a retired one (BROKER_AUDIT_KEYS_RETIRED_PATH): the anchor does not check the log against it',
        {
          source,
          kid: auditHeadKid(jws),
        },
      );
      return { head: null };
    }
    return { head: { pins: s, at: s.at, source } };
  } catch (e) {
    if (e instanceof AuditHeadError) return { refused: { shard: null, reason: `the head cannot be read: ${e.message}`, source, at: null } };
    throw e;
  }
}
