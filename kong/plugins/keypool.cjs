'use strict';
// keypool for Kong's JavaScript plugin server (kong-js-pluginserver from the npm package kong-pdk).
//
// CommonJS on purpose: the server require()s every entry of its plugins directory and this project is ESM.
// Nothing happens at load beyond require()ing the config schema (no timer, socket or open handle): Kong runs
// `--dump-all-plugins` at startup and waits for that process to exit. The implementation, dist/src/adapters/kong/plugin.js (built by `npm run build`), is
// imported on the first request, and it opens dist/src/runtime.js in turn; both stay at module scope because
// the server recreates plugin instances after 60 s idle.
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const IMPLEMENTATION = pathToFileURL(path.resolve(__dirname, '../../dist/src/adapters/kong/plugin.js')).href;

let implementation = null;

function loadImplementation() {
  if (!implementation) {
    implementation = import(IMPLEMENTATION).catch((error) => {
      implementation = null; // try again on a later request (e.g. after `npm run build`)
      throw error;
    });
  }
  return implementation;
}

// Kong validates route/service config against this before the plugin sees it; Kong's own fields
// (__plugin_id, __seq__, route_id, ...) are added afterwards and ignored by the plugin. Built from keypool's rules
// (src/adapters/kong/schema.ts): a pure module, so loading it here does no I/O beyond reading the file.
const { KONG_PLUGIN_SCHEMA: Schema } = require('../../dist/src/adapters/kong/schema.js');

class Plugin {
  constructor(config) {
    this.config = config;
    this.instance = null;
  }

  async access(kong) {
    const instance = await this.load(kong);
    if (instance) await instance.access(kong);
    // Not loaded: nothing is recorded, so the Lua guard in kong.yml answers 503 keypool_unavailable.
  }

  async log(kong) {
    const instance = await this.load(kong);
    if (instance) await instance.log(kong);
  }

  async load(kong) {
    if (this.instance) return this.instance;
    try {
      const { KeypoolKongPlugin } = await loadImplementation();
      this.instance = new KeypoolKongPlugin(this.config);
      return this.instance;
    } catch (error) {
      // Also the phase's one PDK call: kong-pdk 0.6.0 leaks an event for a phase that makes none.
      await kong.log.err(`keypool: cannot load ${IMPLEMENTATION} (run npm run build): ${error && error.message}`)
        .catch(() => undefined);
      return null;
    }
  }
}

module.exports = {
  Plugin,
  Schema,
  Version: require('../../package.json').version,
  // After authentication plugins such as key-auth (1250) and before the bundled post-function guard (-1000).
  Priority: 1000,
};
