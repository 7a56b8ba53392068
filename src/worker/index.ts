/** The worker engine (DESIGN §8): models served by a Python worker process (tools/casa_worker). */
export { WorkerModel } from './model.js';
export { WorkerSession } from './session.js';
export { WORKER_DEFAULTS, type WorkerAdapter, type WorkerLaunch, type WorkerOptions } from './process.js';
export { PROTOCOL_VERSION, type WorkerModelInfo } from './protocol.js';
