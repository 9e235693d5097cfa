import { z } from 'zod';
import { awsTarget } from './aws';
import { gcpTarget } from './gcp';
import { oidcTarget } from './oidc';
import type { MintTarget } from './target';

/** Every mint target, one line each: routes, audit events, grant scope sections and metrics derive from it. */
export const MINT_TARGETS = [oidcTarget, awsTarget, gcpTarget] as const satisfies readonly MintTarget[];

const byName = new Map<string, MintTarget>(MINT_TARGETS.map((t) => [t.name, t as unknown as MintTarget]));

/** The target registered under `name`, or undefined. */
export function mintTarget(name: string): MintTarget | undefined {
  return byName.get(name);
}

/** The scope of POST /v1/grants: every target's sections, only fields a target enforces, each entry checked. */
export const grantScopeSchema = z.object(Object.assign({}, ...MINT_TARGETS.map((t) => t.scope)) as Record<string, z.ZodType>).strict();

export type { MintTarget } from './target';
