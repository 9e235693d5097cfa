/**
 * A small evaluator of identity-policy statements over a session's principal tags, enough to check
 * the kill switch's deny policy the way IAM reads it (IAM User Guide, "Policy evaluation logic",
 * "IAM JSON policy elements: Condition operators", "Create a condition with multiple context keys
 * or values", and aws:PrincipalTag in "AWS global condition context keys"):
 *
 * - an explicit Deny that matches wins over any Allow;
 * - within one operator block every key must match (AND); for one key any listed value may match (OR);
 * - several operator blocks in one Condition must all match (AND);
 * - a key absent from the request context does not match, except under a negated operator
 *   (StringNotEquals, StringNotLike), where it does;
 * - condition key names (`aws:PrincipalTag/<key>`) are matched ignoring case, values by the operator
 *   (StringEquals case-sensitive, StringEqualsIgnoreCase not; StringLike with `*` and `?`);
 * - date operators compare instants (`DateLessThan` on `aws:TokenIssueTime`, the key AWS's own
 *   "revoke active sessions" policy uses: IAM User Guide, "Revoking IAM role temporary security
 *   credentials");
 * - `Null` tests presence: `"true"` matches a key absent from the context, `"false"` one present.
 *
 * Operators it does not know make it throw rather than guess.
 */

export interface RequestContext {
  /** The session's principal tags (aws:PrincipalTag/<key>). */
  principalTags: Record<string, string>;
  /** Other single-valued keys (e.g. aws:SourceIdentity, aws:TokenIssueTime as ISO 8601). */
  keys?: Record<string, string>;
  action: string;
  resource?: string;
}

interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function wildcard(pattern: string, value: string, ignoreCase: boolean): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    ignoreCase ? 'is' : 's',
  );
  return re.test(value);
}

function contextValue(ctx: RequestContext, key: string): string | undefined {
  const lower = key.toLowerCase();
  const prefix = 'aws:principaltag/';
  if (lower.startsWith(prefix)) {
    const tag = lower.slice(prefix.length);
    const found = Object.entries(ctx.principalTags).find(([k]) => k.toLowerCase() === tag);
    return found?.[1];
  }
  return Object.entries(ctx.keys ?? {}).find(([k]) => k.toLowerCase() === lower)?.[1];
}

const OPERATORS: Record<string, { negated: boolean; test: (policyValue: string, actual: string) => boolean }> = {
  StringEquals: { negated: false, test: (p, a) => p === a },
  StringNotEquals: { negated: true, test: (p, a) => p === a },
  StringEqualsIgnoreCase: { negated: false, test: (p, a) => p.toLowerCase() === a.toLowerCase() },
  StringNotEqualsIgnoreCase: { negated: true, test: (p, a) => p.toLowerCase() === a.toLowerCase() },
  StringLike: { negated: false, test: (p, a) => wildcard(p, a, false) },
  StringNotLike: { negated: true, test: (p, a) => wildcard(p, a, false) },
  DateEquals: { negated: false, test: (p, a) => instant(a) === instant(p) },
  DateNotEquals: { negated: true, test: (p, a) => instant(a) === instant(p) },
  DateLessThan: { negated: false, test: (p, a) => instant(a) < instant(p) },
  DateLessThanEquals: { negated: false, test: (p, a) => instant(a) <= instant(p) },
  DateGreaterThan: { negated: false, test: (p, a) => instant(a) > instant(p) },
  DateGreaterThanEquals: { negated: false, test: (p, a) => instant(a) >= instant(p) },
};

/** A date condition value or context value (ISO 8601); anything else makes the evaluator throw rather than guess. */
function instant(text: string): number {
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new RangeError(`not an ISO 8601 date: ${text}`);
  return t;
}

function conditionMatches(condition: Statement['Condition'], ctx: RequestContext): boolean {
  for (const [operator, block] of Object.entries(condition ?? {})) {
    if (operator === 'Null') {
      for (const [key, value] of Object.entries(block)) {
        const absent = contextValue(ctx, key) === undefined;
        if (list(value).some((v) => v !== 'true' && v !== 'false')) throw new RangeError(`Null takes "true" or "false", not ${JSON.stringify(value)}`);
        if (!list(value).some((v) => (v === 'true') === absent)) return false;
      }
      continue;
    }
    const op = OPERATORS[operator];
    if (!op) throw new RangeError(`the evaluator does not know the condition operator ${operator}`);
    for (const [key, values] of Object.entries(block)) {
      const actual = contextValue(ctx, key);
      if (actual === undefined) {
        if (!op.negated) return false;
        continue;
      }
      const any = list(values).some((v) => op.test(v, actual));
      if (op.negated ? any : !any) return false;
    }
  }
  return true;
}

function statementApplies(st: Statement, ctx: RequestContext): boolean {
  const actions = st.NotAction !== undefined ? list(st.NotAction) : list(st.Action);
  const actionHit = actions.some((a) => wildcard(a, ctx.action, true));
  if (st.NotAction !== undefined ? actionHit : !actionHit) return false;
  const resources = list(st.Resource);
  if (!resources.some((r) => wildcard(r, ctx.resource ?? '*', false) || r === '*')) return false;
  return conditionMatches(st.Condition, ctx);
}

/** The Sid (or index) of the first Deny statement of the policy that applies to the request, or undefined. */
export function denyingStatement(policyJson: string, ctx: RequestContext): string | undefined {
  const doc = JSON.parse(policyJson) as { Statement: Statement | Statement[] };
  const statements = Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement];
  for (const [i, st] of statements.entries()) {
    if (st.Effect === 'Deny' && statementApplies(st, ctx)) return st.Sid ?? String(i);
  }
  return undefined;
}
