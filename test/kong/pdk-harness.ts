// Loads kong-pdk's own plugin test harness (plugin_test.js: PluginTest, Request) and fills the PDK functions
// its mock table lacks (kong.ctx.shared.*, kong.log.set_serialize_value), without touching the library.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

const requireHere = createRequire(import.meta.url);
const HARNESS_PATH = requireHere.resolve('kong-pdk/plugin_test.js');
const requireFromHarness = createRequire(HARNESS_PATH);
const MSG_RET = 'ret';

export interface HarnessRequest {
  useURL(url: string): HarnessRequest;
  useHeaders(headers: Record<string, string>): HarnessRequest;
  useMethod(method: string): HarnessRequest;
}

interface FetchHeaders {
  get(name: string): string | null;
  set(name: string, value: string): void;
  entries(): IterableIterator<[string, string]>;
}

interface Pipe {
  get(): Promise<unknown>;
  put(value: unknown): void;
}

interface HarnessModule {
  new (name: string, path: undefined, literal: object): { new: (config: unknown) => HarnessInstance };
}

export interface HarnessInstance {
  readonly cls: object;
}

interface PluginTestLike {
  ch: Pipe;
  request: { headers: FetchHeaders };
  response: { status: number | undefined; headers: FetchHeaders };
  serviceRequest: { headers: FetchHeaders };
  exiting: boolean;
  Run(plugin: object, config: unknown): Promise<{ instance: HarnessInstance }>;
  executePhase(instance: HarnessInstance, phase: string): Promise<void>;
}

interface HarnessExports {
  PluginTest: new (request: HarnessRequest) => PluginTestLike;
  Request: new () => HarnessRequest;
}

/**
 * plugin_test.js requires `uuid`, which kong-pdk 0.6.0 lists only as a devDependency. When it is not
 * installed, the same file is evaluated with a require that answers `uuid` from node:crypto.
 */
function loadHarness(): HarnessExports {
  // lib/mod.js registers ts-node, whose hoisted copy would pick up this project's TypeScript 7.
  process.env['TS_NODE_COMPILER'] ??= requireFromHarness.resolve('typescript');
  process.env['TS_NODE_SKIP_PROJECT'] ??= 'true';
  try {
    return requireHere(HARNESS_PATH) as HarnessExports;
  } catch (error) {
    if (!(error instanceof Error) || !/Cannot find module 'uuid'/.test(error.message)) throw error;
  }
  const shimmedRequire = Object.assign(
    (id: string): unknown => (id === 'uuid' ? { v4: randomUUID } : requireFromHarness(id)),
    requireFromHarness,
  );
  const module = { exports: {} as HarnessExports };
  const evaluate = vm.compileFunction(
    readFileSync(HARNESS_PATH, 'utf8'),
    ['exports', 'require', 'module', '__filename', '__dirname'],
    { filename: HARNESS_PATH },
  );
  evaluate(module.exports, shimmedRequire, module, HARNESS_PATH, path.dirname(HARNESS_PATH));
  return module.exports;
}

const harness = loadHarness();
export const HarnessRequestClass = harness.Request;
const HarnessModuleClass = (requireFromHarness('./lib/mod.js') as { Module: HarnessModule }).Module;

type PdkFunction = (...args: unknown[]) => unknown;

/** Returned by an override: Kong answers that PDK call with an error (the plugin's call rejects). */
export class PdkFailure {
  constructor(readonly message: string) {}
}

/** One request through kong-pdk's PluginTest, with the PDK calls it makes recorded by name. */
export class KeypoolPluginTest {
  readonly test: PluginTestLike;
  /** Every PDK call, in order, as `kong.x.y`. */
  readonly calls: string[] = [];
  readonly shared = new Map<string, unknown>();
  readonly serializeValues = new Map<string, unknown>();
  readonly errors: string[] = [];
  private readonly extra: Record<string, PdkFunction>;

  constructor(request: HarnessRequest, overrides: Record<string, PdkFunction> = {}) {
    this.test = new harness.PluginTest(request);
    this.extra = {
      'kong.ctx.shared.get': (key) => this.shared.get(String(key)),
      'kong.ctx.shared.set': (key, value) => void this.shared.set(String(key), value),
      'kong.log.set_serialize_value': (key, value) => void this.serializeValues.set(String(key), value),
      'kong.log.err': (...message) => void this.errors.push(message.join('')),
      ...overrides,
    };
    // The harness answers PDK calls by reading this pipe; answer ours first and hand it the rest.
    const pipe = this.test.ch;
    this.test.ch = {
      put: (value) => pipe.put(value),
      get: async () => {
        for (;;) {
          const message = await pipe.get();
          if (message === MSG_RET) return message;
          const { Method, Args } = message as { Method: string; Args: unknown[] };
          this.calls.push(Method);
          const own = this.extra[Method];
          if (!own) return message;
          const result = own(...Args);
          pipe.put(result instanceof PdkFailure ? [undefined, result.message] : [result, undefined]);
        }
      },
    };
  }

  /** The harness's full request: access, (no response phase), log with status 200 from its echo upstream. */
  run(plugin: object, config: unknown): Promise<{ instance: HarnessInstance }> {
    return this.test.Run(plugin, config);
  }

  static instance(plugin: object, config: unknown): HarnessInstance {
    return new HarnessModuleClass('keypool', undefined, plugin).new(config);
  }

  phase(instance: HarnessInstance, phase: 'access' | 'log'): Promise<void> {
    return this.test.executePhase(instance, phase);
  }

  /** Calls made since `from` (e.g. the log phase's after access). */
  callsSince(from: number): string[] {
    return this.calls.slice(from);
  }

  upstreamHeaders(): Record<string, string> {
    return Object.fromEntries(this.test.serviceRequest.headers.entries());
  }
}
