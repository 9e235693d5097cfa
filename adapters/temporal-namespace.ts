/**
 * What the broker needs of its Temporal namespace before it serves: the namespace itself and the four
 * custom search attributes every flow upserts (a flow on a namespace without them fails at its first
 * upsert). The worker and the API check both at start-up, register missing attributes where the server
 * lets them, and otherwise stop with the exact command that does; /readyz reports the same checks.
 */
import { isGrpcServiceError } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTE_NAMES, type SearchAttributeName } from '../lib/search-attributes';
import type { ReadinessCheck } from '../lib/readiness';
import { StartupError } from '../lib/startup-error';

const IndexedValueType = temporal.api.enums.v1.IndexedValueType;
import operatorservice = temporal.api.operatorservice.v1;
/** gRPC status codes the checks tell apart. */
const GRPC = { NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, UNIMPLEMENTED: 12, UNAUTHENTICATED: 16 } as const;

/** The broker's custom search attributes and their Temporal types (all Keyword). */
export const SEARCH_ATTRIBUTES: Readonly<Record<SearchAttributeName, 'Keyword'>> = Object.freeze(
  Object.fromEntries(SEARCH_ATTRIBUTE_NAMES.map((name) => [name, 'Keyword' as const])) as Record<SearchAttributeName, 'Keyword'>,
);

/** Anything exposing the operator service: a `@temporalio/client` Connection or a worker NativeConnection. */
export interface HasOperatorService {
  operatorService: {
    listSearchAttributes(req: operatorservice.IListSearchAttributesRequest): Promise<operatorservice.IListSearchAttributesResponse>;
    addSearchAttributes(req: operatorservice.IAddSearchAttributesRequest): Promise<unknown>;
  };
}

/** A connection as the namespace checks use it. */
export interface NamespaceConnection extends HasOperatorService {
  workflowService: { describeNamespace(req: temporal.api.workflowservice.v1.IDescribeNamespaceRequest): Promise<unknown> };
}

/**
 * The Temporal CLI command (v1.x: one `--type` per `--name`) that registers `names` in `namespace`;
 * docs/operations.md prints it for all four, and a test runs that one.
 */
export function searchAttributeCommand(namespace: string, address?: string, names: readonly string[] = SEARCH_ATTRIBUTE_NAMES): string {
  const flags = names.map((name) => `--name ${name} --type Keyword`).join(' ');
  return `temporal operator search-attribute create${address ? ` --address ${address}` : ''} --namespace ${namespace} ${flags}`;
}

/** Temporal Cloud registers search attributes through its own control plane, not the operator service. */
function isTemporalCloud(address: string | undefined): boolean {
  return /\.tmprl\.cloud(:\d+)?$|\.api\.temporal\.io(:\d+)?$/.test(address ?? '');
}

/** The command an operator runs where the broker may not register the attributes itself. */
export function registerCommand(namespace: string, address: string | undefined, names: readonly string[]): string {
  if (isTemporalCloud(address))
    return `register ${names.join(', ')} as Keyword in namespace ${namespace} (Temporal Cloud UI → Namespace → Search attributes, or tcld namespace search-attributes add)`;
  return searchAttributeCommand(namespace, address, names);
}

/** "run `<command>`" on a self-hosted server, the Cloud instructions on Temporal Cloud. */
function fixLine(namespace: string, address: string | undefined, names: readonly string[]): string {
  return isTemporalCloud(address) ? registerCommand(namespace, address, names) : `run \`${registerCommand(namespace, address, names)}\``;
}

function grpcCode(e: unknown): number | undefined {
  return isGrpcServiceError(e) ? Number(e.code) : undefined;
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '';
}

async function listCustomAttributes(connection: HasOperatorService, namespace: string): Promise<Record<string, temporal.api.enums.v1.IndexedValueType>> {
  const res = await connection.operatorService.listSearchAttributes({ namespace });
  return res.customAttributes ?? {};
}

function isKeyword(type: temporal.api.enums.v1.IndexedValueType | undefined): boolean {
  return type === IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
}

/** The broker attributes `namespace` lacks (or holds with another type than Keyword). */
export async function missingSearchAttributes(connection: HasOperatorService, namespace: string): Promise<SearchAttributeName[]> {
  const existing = await listCustomAttributes(connection, namespace);
  return SEARCH_ATTRIBUTE_NAMES.filter((name) => !isKeyword(existing[name]));
}

/**
 * Registers the broker's search attributes in `namespace` on an existing server, as Keyword, skipping
 * those already present. Throws if one exists with another type, or if, after registering, the server
 * still does not list them all. Needs operator permissions (Temporal Cloud: tcld or the UI).
 * Answers the names it registered.
 */
export async function ensureSearchAttributes(connection: HasOperatorService, namespace: string): Promise<SearchAttributeName[]> {
  const existing = await listCustomAttributes(connection, namespace);
  const wrongType = SEARCH_ATTRIBUTE_NAMES.filter((name) => existing[name] !== undefined && !isKeyword(existing[name]));
  if (wrongType.length > 0) {
    throw new Error(
      `Search attributes already registered in namespace ${namespace} with a type other than Keyword: ` +
        wrongType.map((name) => `${name}=${IndexedValueType[existing[name] ?? 0]}`).join(', '),
    );
  }
  const toAdd = SEARCH_ATTRIBUTE_NAMES.filter((name) => existing[name] === undefined);
  if (toAdd.length === 0) return [];
  try {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(toAdd.map((name) => [name, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
    });
  } catch (err) {
    if (!(grpcCode(err) === GRPC.ALREADY_EXISTS || /already exists/i.test(String(err)))) throw err;
  }
  const stillMissing = await missingSearchAttributes(connection, namespace);
  if (stillMissing.length > 0) {
    throw new Error(`Search attributes still missing in namespace ${namespace} after registering: ${stillMissing.join(', ')}`);
  }
  return toAdd;
}

/** The namespace does not exist: the one-line fix. */
function namespaceMissing(namespace: string, address: string | undefined): string {
  const create = isTemporalCloud(address)
    ? 'create it in Temporal Cloud (UI or `tcld namespace create`)'
    : `create it with \`temporal operator namespace create${address ? ` --address ${address}` : ''} --namespace ${namespace}\``;
  return `TEMPORAL_NAMESPACE=${namespace} does not exist on ${address ?? 'the Temporal server'}: ${create}, or fix TEMPORAL_NAMESPACE`;
}

/** What the server says of `namespace`: absent, its attributes not listable (a restricted key), or which are missing. */
type NamespaceState = { absent: true } | { absent: false; unlisted: string } | { absent: false; unlisted?: undefined; missing: SearchAttributeName[] };

async function inspectNamespace(connection: NamespaceConnection, namespace: string): Promise<NamespaceState> {
  try {
    await connection.workflowService.describeNamespace({ namespace });
  } catch (e) {
    if (grpcCode(e) === GRPC.NOT_FOUND) return { absent: true };
    throw e;
  }
  try {
    return { absent: false, missing: await missingSearchAttributes(connection, namespace) };
  } catch (e) {
    const code = grpcCode(e);
    if (code === GRPC.PERMISSION_DENIED || code === GRPC.UNIMPLEMENTED) return { absent: false, unlisted: oneLine(e) };
    throw e;
  }
}

/**
 * Start-up: the namespace must exist; missing search attributes are registered where the server allows it
 * (`onRegistered` is told which), otherwise this throws a StartupError naming the command that registers them.
 */
export async function prepareTemporalNamespace(
  connection: NamespaceConnection,
  opts: { namespace: string; address?: string; onRegistered?: (line: string) => void },
): Promise<void> {
  const { namespace, address } = opts;
  const state = await inspectNamespace(connection, namespace);
  if (state.absent) throw new StartupError(namespaceMissing(namespace, address));
  // Listing refused: the broker cannot tell; say so, do not stop.
  if (state.unlisted !== undefined) {
    opts.onRegistered?.(
      `search attributes in namespace ${namespace} not checked (${state.unlisted}); make sure ${SEARCH_ATTRIBUTE_NAMES.join(', ')} are registered`,
    );
    return;
  }
  const { missing } = state;
  if (missing.length === 0) return;
  try {
    const added = await ensureSearchAttributes(connection, namespace);
    opts.onRegistered?.(`registered search attributes ${added.join(', ')} in namespace ${namespace} (they were missing)`);
  } catch (e) {
    throw new StartupError(
      `search attributes ${missing.join(', ')} are not registered in namespace ${namespace} and the broker may not register them (${oneLine(e)}): ${fixLine(namespace, address, missing)}`,
    );
  }
}

/** The /readyz part: the namespace exists and lists every broker search attribute as Keyword. */
export function namespaceReadiness(connection: NamespaceConnection, namespace: string, address?: string): ReadinessCheck {
  return async () => {
    const state = await inspectNamespace(connection, namespace);
    if (state.absent) return { ok: false, detail: `namespace ${namespace} does not exist` };
    if (state.unlisted !== undefined) return { ok: true, detail: `namespace ${namespace}; search attributes not checked (${state.unlisted})` };
    if (state.missing.length > 0)
      return {
        ok: false,
        detail: `search attributes missing in namespace ${namespace}: ${state.missing.join(', ')} (${fixLine(namespace, address, state.missing)})`,
      };
    return { ok: true, detail: `namespace ${namespace}, search attributes ${SEARCH_ATTRIBUTE_NAMES.join(', ')}` };
  };
}
