import { rename, writeFile } from 'node:fs/promises';
import { Context, log, type Info as ActivityInfo } from '@temporalio/activity';
import type { IAMClient } from '@aws-sdk/client-iam';
import { createIamClient, IAM_CALL_MAX_MS, isLimitExceeded, otherInlinePolicies, setRolePolicy } from '../adapters/iam-client';
import { killSwitchEntryOf, liveKillSwitchEntries, purgeKillSwitchEntries, type KillSwitchEntryRow } from '../db/kill-switch';
import {
  inlinePolicySize,
  KILL_SWITCH_POLICY_NAME,
  killSwitchPolicy,
  killSwitchRoleNames,
  ROLE_POLICY_MAX_CHARS,
  UNREAD_INLINE_RESERVE_CHARS,
  type KillSwitchPolicy,
} from '../lib/kill-switch';
import { killSwitchCollapsedWallets, killSwitchEntries, killSwitchRoleWide } from '../lib/metrics';
import type { ActingContext } from '../lib/oidc-claims';
import type { KillSwitchApplied } from '../workflows/kill-switch.definitions';
import type { ActivityDeps } from './deps';

/**
 * What a credential minted under this grant names (lib/oidc-claims.ts withActingClaims): the agent,
 * the grant and the agent's revocation epoch for the grant's main wallet as the mint's
 * authorisation read it — in the same statement as the grant's standing (db/grants.ts
 * agentGrantStanding), never later. An agent revocation revokes the agent's grants and raises its
 * epoch in one transaction: a mint authorised before it carries the epoch it ends, whose deny entry
 * covers the credential even when its grant expired or was left in between (and so has no grant
 * entry); a mint authorised after it finds no active grant, or one accepted since, under the next
 * epoch (docs/kill-switch.md, "A mint in flight").
 */
export function actingContextFor(grant: { grantId: string; agentAddress: string; epoch: number } | undefined): ActingContext | undefined {
  return grant && { agentWallet: grant.agentAddress, grantId: grant.grantId, epoch: grant.epoch };
}

/**
 * How much smaller than the document IAM refused with LimitExceeded the next one is rendered. The
 * role's other inline policies were read (or a reserve assumed) just before: a refusal means they
 * grew since, or are larger than the reserve, and a few steps reach any size the role can hold.
 */
const LIMIT_EXCEEDED_STEP_CHARS = 1024;

/**
 * How late, on this host's clock, an attempt may learn it started: the server starts an attempt's
 * start-to-close timer when it hands the task to this worker, a moment before the activity runs.
 */
const ATTEMPT_START_MARGIN_MS = 2000;

/**
 * The latest moment (ms since the epoch, this host's clock) at which an attempt of applyKillSwitch
 * may start a write: its start-to-close deadline less IAM_CALL_MAX_MS (one IAM call's longest wait
 * for an answer) and a margin for the delivery of the task. Past the deadline the server schedules
 * the next attempt (after a backoff of 2 s or more) while this one may still be running; a write
 * started by the cutoff has had its answer, or been given up, by the deadline, so no write of this
 * attempt is sent after the next one began. (IAM may still apply a request it received and whose
 * answer was lost: the next attempt compares the role's policy before writing, and writes the
 * newer document over it.) Counted from when the attempt started here, not from when it was
 * scheduled: time spent waiting in the task queue is not part of the start-to-close timeout. A
 * start-to-close timeout with no room for one call leaves no cutoff (Infinity) rather than an
 * activity that can never apply anything (the workflow gives it a minute; MockActivityEnvironment's
 * default info gives 1 s).
 */
export function killSwitchWriteCutoffMs(info: Pick<ActivityInfo, 'startToCloseTimeoutMs'>, startedMs: number): number {
  const room = info.startToCloseTimeoutMs - IAM_CALL_MAX_MS - ATTEMPT_START_MARGIN_MS;
  return room > 0 ? startedMs + room : Infinity;
}

/** The running attempt's write cutoff and cancellation; none when called outside an activity (a test calling it directly). */
function currentAttempt(startedMs: number): { cutoffMs: number; abortSignal?: AbortSignal } {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return { cutoffMs: Infinity };
  }
  return { cutoffMs: killSwitchWriteCutoffMs(ctx.info, startedMs), abortSignal: ctx.cancellationSignal };
}

const sameEntries = (a: KillSwitchEntryRow[], b: KillSwitchEntryRow[]) => a.length === b.length && a.every((e, i) => e.entry_id === b[i]?.entry_id);
const earliestExpiry = (entries: KillSwitchEntryRow[], min: number | null) =>
  entries.reduce<number | null>((m, e) => (m === null || e.expires_at.getTime() < m ? e.expires_at.getTime() : m), min);

/**
 * `attemptStartedMs`: when the running attempt began on this host's clock (default: now, when the
 * activity is called); tests move it back to stand for an attempt late in its minute.
 */
export function createKillSwitchActivities(deps: ActivityDeps, opts: { attemptStartedMs?: () => number } = {}) {
  let iam: IAMClient | undefined;
  return {
    /**
     * Drops expired entries and applies the rest: PutRolePolicy (DeleteRolePolicy when none is
     * left) on each configured role whose policy differs, or the document written to
     * BROKER_KILL_SWITCH_POLICY_FILE. Idempotent: it applies the whole document each time, and a
     * role already holding it is not written again (adapters/iam-client.ts). Never refused for its
     * size: each role's document is rendered against what the role's other inline policies leave of
     * the 10,240 characters they share (read each time; a reserve assumed when they cannot be
     * read), entries that do not fit one by one are denied by issue time (lib/kill-switch.ts), a
     * LimitExceeded all the same renders smaller, and the result says what was collapsed. A role
     * that fails does not stop the others: the activity fails (and is retried) after trying them all.
     *
     * No write starts after the attempt's write cutoff (killSwitchWriteCutoffMs): past it the role
     * fails with a retryable error instead, and the next attempt reads the entries afresh. Each
     * write renders the entries read again just before it, so what it puts was read at most one
     * IAM call (the GetRolePolicy that compares) before the PutRolePolicy starts, not at the start
     * of an attempt that may have spent most of its minute on other roles: a revocation recorded
     * meanwhile is applied by that write, not only by the next wake-up. The cutoff is what keeps an
     * overrun attempt from undoing a later one; the re-read keeps each write as new as it can be.
     * Each IAM call is aborted when the activity is cancelled.
     */
    async applyKillSwitch(): Promise<KillSwitchApplied> {
      const { config } = deps;
      const { cutoffMs, abortSignal } = currentAttempt(opts.attemptStartedMs?.() ?? Date.now());
      const at = new Date(deps.now());
      const dropped = await purgeKillSwitchEntries(deps.db, at);
      let entries = await liveKillSwitchEntries(deps.db, at);
      /** The earliest expiry among every entry read: waking for one that is gone by then costs a wake-up, missing one would keep it denied. */
      let nextExpiry = earliestExpiry(entries, null);
      let rendered = new Map<number, KillSwitchPolicy>();
      /** An IAM call was made since the entries were read: the next write reads them again first. */
      let stale = false;
      /** Reads the live entries again (as of the same `at`) for the write about to be rendered, if an IAM call came between. */
      const reread = async () => {
        if (!stale) return;
        stale = false;
        const fresh = await liveKillSwitchEntries(deps.db, at);
        nextExpiry = earliestExpiry(fresh, nextExpiry);
        if (!sameEntries(fresh, entries)) {
          entries = fresh;
          rendered = new Map();
        }
      };
      /** Throws, naming why, once the attempt is past its write cutoff: what it would write may be older than a later attempt's. */
      const beforeWrite = (target: string) => () => {
        abortSignal?.throwIfAborted();
        if (Date.now() > cutoffMs) {
          throw new Error(
            `not writing the kill switch policy ${target}: the activity attempt is past its write cutoff (${new Date(cutoffMs).toISOString()}, its start-to-close deadline less ${IAM_CALL_MAX_MS} ms, the longest one IAM call takes), so a later attempt may already have written newer entries; the next attempt reads them afresh`,
          );
        }
      };
      /** The document for a role whose other inline policies leave `maxChars`. */
      const render = (maxChars: number) => {
        const budget = Math.max(0, maxChars);
        let p = rendered.get(budget);
        if (!p) {
          p = killSwitchPolicy(entries.map(killSwitchEntryOf), { oidcTtlSeconds: config.BROKER_OIDC_JWT_TTL_SECONDS, maxChars: budget });
          rendered.set(budget, p);
        }
        return p;
      };
      /** What was applied: the most collapsed of the documents written (roles may differ). */
      const applied: KillSwitchPolicy[] = [];
      /** Set when a role could not be written: thrown (and so retried) once the others are. */
      let failure: Error | undefined;
      if (config.BROKER_KILL_SWITCH === 'iam') {
        iam ??= createIamClient(config);
        const client = iam;
        const unread: string[] = [];
        const unbudgeted: { role: string; refused: string }[] = [];
        const failed: { role: string; error: Error }[] = [];
        for (const role of killSwitchRoleNames(config.BROKER_KILL_SWITCH_ROLE_NAMES, config.BROKER_DATA_ROLE_ARN)) {
          const checkCutoff = beforeWrite(`to role ${role}`);
          try {
            // Past the cutoff no write can follow: spend no IAM read on the role.
            checkCutoff();
            /** What the role's other inline policies leave; read once the entries to write are not none. */
            let budget: number | undefined;
            for (;;) {
              await reread();
              if (budget === undefined && entries.length > 0) {
                budget = ROLE_POLICY_MAX_CHARS;
                stale = true;
                const others = await otherInlinePolicies(client, role, KILL_SWITCH_POLICY_NAME, { abortSignal });
                if (others.state === 'read') budget -= others.size;
                else {
                  budget -= UNREAD_INLINE_RESERVE_CHARS;
                  unbudgeted.push({ role, refused: `iam:${others.action}` });
                }
                // Sizing the role took IAM calls: the write renders the entries as they are now.
                await reread();
              }
              const p = render(budget ?? ROLE_POLICY_MAX_CHARS);
              stale = true;
              try {
                if ((await setRolePolicy(client, role, KILL_SWITCH_POLICY_NAME, p.document, { abortSignal, beforeWrite: checkCutoff })).readRefused) {
                  unread.push(role);
                }
                applied.push(p);
                break;
              } catch (e) {
                if (!isLimitExceeded(e) || p.document === undefined) throw e;
                // The role's other inline policies leave less than assumed: render against less
                // than this document took, unless nothing smaller can be rendered.
                const refused = inlinePolicySize(p.document);
                const smaller = Math.min(budget ?? ROLE_POLICY_MAX_CHARS, refused) - LIMIT_EXCEEDED_STEP_CHARS;
                const next = render(smaller).document;
                if (next === undefined || inlinePolicySize(next) >= refused) {
                  throw new Error(
                    `IAM refused the kill switch policy for role ${role} for its size (LimitExceeded) at ${refused} characters, the smallest it renders: the role's other inline policies leave no room for it`,
                    { cause: e },
                  );
                }
                log.warn('kill switch policy refused for its size (LimitExceeded): rendered smaller', { role, refusedChars: refused, budget: smaller });
                budget = smaller;
              }
            }
          } catch (e) {
            failed.push({ role, error: e as Error });
          }
        }
        if (unbudgeted.length > 0) {
          log.warn(
            `kill switch: the roles' other inline policies are not readable, so ${UNREAD_INLINE_RESERVE_CHARS} of the role's ${ROLE_POLICY_MAX_CHARS} characters are assumed taken by them (grant iam:ListRolePolicies and iam:GetRolePolicy)`,
            { roles: unbudgeted.map((u) => u.role), refused: [...new Set(unbudgeted.map((u) => u.refused))] },
          );
        }
        if (unread.length > 0) {
          log.warn('kill switch policy not readable (iam:GetRolePolicy refused): written without comparing, so every wake-up spends IAM writes', {
            roles: unread,
          });
        }
        for (const f of failed) log.error('kill switch policy not applied to a role', { role: f.role, error: f.error.message });
        const first = failed[0];
        if (first) {
          failure = new Error(`kill switch policy not applied to ${failed.map((f) => f.role).join(', ')}: ${failed.map((f) => f.error.message).join('; ')}`, {
            cause: first.error,
          });
        }
      } else if (config.BROKER_KILL_SWITCH === 'file' && config.BROKER_KILL_SWITCH_POLICY_FILE) {
        // Applied by the operator's own tooling to roles the broker never sees: rendered as if
        // other inline policies took the reserve (docs/kill-switch.md, "Limits").
        const file = config.BROKER_KILL_SWITCH_POLICY_FILE;
        const p = render(ROLE_POLICY_MAX_CHARS - UNREAD_INLINE_RESERVE_CHARS);
        beforeWrite(`to ${file}`)();
        applied.push(p);
        const empty = JSON.stringify({ Version: '2012-10-17', Statement: [] });
        await writeFile(`${file}.tmp`, `${p.document ?? empty}\n`);
        await rename(`${file}.tmp`, file);
      } else {
        applied.push(render(ROLE_POLICY_MAX_CHARS));
      }
      const collapsedWallets = applied.reduce((n, p) => Math.max(n, p.collapsedWallets.length), 0);
      const roleWide = applied.some((p) => p.roleWide);
      if (collapsedWallets > 0) {
        log.warn('kill switch entries over the policy size: denied by issue time', {
          entries: entries.length,
          collapsedWallets,
          roleWide,
        });
      }
      killSwitchEntries.set(entries.length);
      killSwitchCollapsedWallets.set(collapsedWallets);
      killSwitchRoleWide.set(roleWide ? 1 : 0);
      if (failure) throw failure;
      return { entries: entries.length, dropped, nextExpiryMs: nextExpiry, collapsedWallets, roleWide };
    },
  };
}
