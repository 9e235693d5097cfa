/**
 * /metrics stays off the public surface: the nginx site passes no location that matches it on the
 * public server, and the local cluster gives every API and worker process ports of its own.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { HTTP_REQUEST_DURATION, processRegistry } from '../lib/metrics';
import { allPorts, APIS, layout, WORKERS } from '../scripts/cluster/layout';
import { locationFor, publicLocations } from './support/nginx-site';

void describe('metrics exposure', () => {
  void test('no public nginx location passes /metrics to the broker', () => {
    const locations = publicLocations();
    assert.ok(locations.length > 5, 'found no locations in the public server');
    for (const path of ['/metrics', '/metrics/', '/METRICS'])
      assert.equal(locationFor(locations, path)?.proxied ?? false, false, `${path} reaches the broker through the public server`);
  });

  void test('the cluster gives each API and worker its own metrics ports, none shared with anything else', () => {
    const l = layout(27000);
    assert.equal(l.apiMetrics.length, APIS);
    assert.equal(l.workerMetrics.length, WORKERS);
    assert.equal(l.workerSdkMetrics.length, WORKERS);
    const ports = allPorts(l);
    assert.equal(new Set(ports).size, ports.length, 'two parts of the cluster share a port');
    for (const p of [...l.apiMetrics, ...l.workerMetrics, ...l.workerSdkMetrics]) {
      assert.ok(ports.includes(p));
      assert.ok(!l.apis.includes(p));
    }
  });

  void test('the Grafana dashboard reads only metrics the broker serves', () => {
    const dashboard = JSON.parse(readFileSync(join(__dirname, '..', 'deploy', 'grafana', 'agentkeys-broker.json'), 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const served = new Set([HTTP_REQUEST_DURATION, ...processRegistry.getMetricsAsArray().map((m) => m.name)]);
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    const used = exprs.flatMap((e) => [...e.matchAll(/\b((?:broker|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, '')));
    assert.ok(used.length > 10);
    assert.deepEqual(
      used.filter((name) => !served.has(name)),
      [],
    );
  });
});
