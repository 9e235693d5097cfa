/**
 * Holds calls of the Temporal client the API and a test share, on one gate, until the test
 * releases them: a test can then act between the API's checks and the flow they lead to. `method`
 * of `client.workflow` is wrapped; `intercept` gets the original (bound) method, the call's
 * arguments and `wait`, which counts the call as held and waits for release().
 */
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';

type Method = (...args: unknown[]) => unknown;

export function holdWorkflowClientCalls(
  client: Client,
  method: string,
  intercept: (original: Method, args: unknown[], wait: () => Promise<void>) => unknown,
): { held: () => number; release: () => void; restore: () => void } {
  const wf = client.workflow as unknown as Record<string, Method>;
  const original = wf[method];
  assert.ok(typeof original === 'function', `WorkflowClient.${method}`);
  const bound = original.bind(wf);
  let held = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const wait = async () => {
    held += 1;
    await gate;
  };
  wf[method] = (...args: unknown[]) => intercept(bound, args, wait);
  return {
    held: () => held,
    release,
    restore: () => {
      delete wf[method];
    },
  };
}
