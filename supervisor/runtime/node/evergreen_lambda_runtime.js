/*
 * Evergreen's runtime for Greengrass V1 Node.js functions (nodejs12.x, nodejs8.10), Evergreen's
 * own code. Started by the Evergreen supervisor as `node evergreen_lambda_runtime.js` with this
 * directory's node_modules on NODE_PATH (the modules `aws-greengrass-core-sdk` requires from the
 * core) and the function's directory as the working directory. It loads the handler's module
 * once (so a pinned function's top-level code runs at start), reports the initialisation, then
 * long-polls the Lambda IPC endpoint for work, one invocation at a time:
 *   * the event is decoded per ENCODING_TYPE: `json` gives the parsed value (an empty payload
 *     gives null; a payload that is not JSON is passed as a string); `binary` gives a Buffer;
 *   * the handler is called as `handler(event, context, callback)`. The invocation ends at the
 *     first of: `callback(err, result)`, `context.succeed(result)`, `context.fail(err)`,
 *     `context.done(err, result)`, the settling of a returned promise (async handlers) or, for
 *     a handler declared with fewer than three parameters that returns no promise, its return;
 *   * the result is sent back JSON-encoded (`json`), or as raw bytes (`binary`: a Buffer as is,
 *     a string as UTF-8, undefined or null as empty);
 *   * an error (thrown, passed to the callback, a rejected promise) is posted as a Handled error
 *     `{errorMessage, errorType, stackTrace}` and the worker goes on serving; the supervisor
 *     reports timeouts and crashes as Unhandled.
 * stdout and stderr go to the function's log.
 */
'use strict';

const path = require('path');
const IPCClient = require('aws-greengrass-ipc-sdk-js');

const FUNCTION_ARN = process.env.MY_FUNCTION_ARN || '';
const HANDLER = process.env.EVERGREEN_HANDLER || '';
const CODE_DIR = process.env.EVERGREEN_CODE_DIR || process.cwd();
const ENCODING = process.env.ENCODING_TYPE || 'json';
const TIMEOUT_MS = Number(process.env.EVERGREEN_FUNCTION_TIMEOUT_MS) || 3000;
// How often a failed poll is retried, and how many times in a row, before the worker gives up
// (the supervisor then restarts it per its policy).
const RETRY_DELAY_MS = 200;
const MAX_POLL_FAILURES = 50;

const ipc = new IPCClient();

function loadHandler() {
    const dot = HANDLER.lastIndexOf('.');
    if (dot <= 0 || dot === HANDLER.length - 1) {
        throw new Error(`handler "${HANDLER}" is not of the form file.function`);
    }
    const mod = require(path.resolve(CODE_DIR, HANDLER.slice(0, dot)));
    const fn = mod[HANDLER.slice(dot + 1)];
    if (typeof fn !== 'function') {
        throw new Error(`module "${HANDLER.slice(0, dot)}" exports no function "${HANDLER.slice(dot + 1)}"`);
    }
    return fn;
}

function clientContextOf(encoded) {
    if (!encoded) {
        return { custom: {}, Custom: {} };
    }
    let doc;
    try {
        doc = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8'));
    } catch (e) {
        process.stderr.write('[WARN] runtime: the client context is not base64 JSON; passing an empty one\n');
        return { custom: {}, Custom: {} };
    }
    if (!doc || typeof doc !== 'object') {
        return { custom: {}, Custom: {} };
    }
    // `custom` as Greengrass's Python runtime named it, `Custom` as AWS Lambda's Node.js one.
    const custom = doc.custom || doc.Custom || {};
    return { custom, Custom: custom, client: doc.client, env: doc.env };
}

function decodeEvent(payload) {
    if (ENCODING === 'binary') {
        return payload;
    }
    if (!payload || payload.length === 0) {
        return null;
    }
    const text = payload.toString('utf8');
    try {
        return JSON.parse(text);
    } catch (e) {
        return text;
    }
}

function encodeResult(value) {
    if (ENCODING === 'binary') {
        if (value === undefined || value === null) {
            return Buffer.alloc(0);
        }
        if (Buffer.isBuffer(value)) {
            return value;
        }
        if (typeof value === 'string') {
            return Buffer.from(value, 'utf8');
        }
    }
    const json = JSON.stringify(value === undefined ? null : value);
    return Buffer.from(json === undefined ? 'null' : json, 'utf8');
}

function errorDoc(err) {
    if (err instanceof Error) {
        return {
            errorMessage: err.message,
            errorType: err.name || 'Error',
            stackTrace: String(err.stack || '').split('\n').slice(1).map((l) => l.trim()),
        };
    }
    return { errorMessage: typeof err === 'string' ? err : JSON.stringify(err), errorType: 'Error', stackTrace: [] };
}

/** Runs one invocation; resolves to `{err, value}` once, whichever way the handler ends it. */
function invoke(handler, work) {
    return new Promise((resolve) => {
        let ended = false;
        const end = (err, value) => {
            if (ended) {
                return;
            }
            ended = true;
            resolve({ err: err === undefined ? null : err, value });
        };
        const fields = FUNCTION_ARN.split(':');
        const deadline = work.deadlineMs || Date.now() + TIMEOUT_MS;
        const context = {
            functionName: fields.length > 6 ? fields[6] : FUNCTION_ARN,
            functionVersion: fields.length > 7 ? fields[7] : '$LATEST',
            invokedFunctionArn: FUNCTION_ARN,
            awsRequestId: work.invocationId,
            invokeid: work.invocationId,
            clientContext: clientContextOf(work.clientContext),
            identity: undefined,
            memoryLimitInMB: undefined,
            logGroupName: undefined,
            logStreamName: undefined,
            // Accepted for code written for AWS Lambda; the invocation never waits for the event loop.
            callbackWaitsForEmptyEventLoop: false,
            getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
            succeed: (result) => end(null, result),
            fail: (err) => end(err || new Error('context.fail()')),
            done: (err, result) => end(err, result),
        };
        let returned;
        try {
            returned = handler(decodeEvent(work.payload), context, end);
        } catch (e) {
            end(e);
            return;
        }
        if (returned && typeof returned.then === 'function') {
            returned.then((v) => end(null, v), (e) => end(e || new Error('the promise was rejected')));
        } else if (handler.length < 3) {
            end(null, returned);
        }
    });
}

function call(method, ...args) {
    return new Promise((resolve, reject) => {
        ipc[method](...args, (err, value) => (err ? reject(err) : resolve(value)));
    });
}

async function serve(handler) {
    let failures = 0;
    for (;;) {
        let work;
        try {
            work = await call('getWork', FUNCTION_ARN);
            failures = 0;
        } catch (e) {
            failures += 1;
            if (failures >= MAX_POLL_FAILURES) {
                process.stderr.write(`giving up after ${failures} failed polls: ${e.message}\n`);
                process.exit(2);
            }
            await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
            continue;
        }
        if (!work) {
            continue;
        }
        const { err, value } = await invoke(handler, work);
        try {
            if (err) {
                process.stderr.write(`[ERROR] runtime: handler ${HANDLER} failed: ${err && err.stack ? err.stack : err}\n`);
                await call('postHandlerErr', FUNCTION_ARN, work.invocationId, errorDoc(err));
            } else {
                await call('postWorkResult', FUNCTION_ARN, work.invocationId, encodeResult(value));
            }
        } catch (e) {
            // A refused answer (the invocation was given up meanwhile) is logged; the worker keeps serving.
            process.stderr.write(`cannot post the result: ${e.message}\n`);
        }
    }
}

async function main() {
    let handler;
    try {
        handler = loadHandler();
    } catch (e) {
        process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
        try {
            await call('putInitializationResult', FUNCTION_ARN, e);
        } catch (report) {
            process.stderr.write(`cannot report the initialisation failure: ${report.message}\n`);
        }
        process.exit(1);
    }
    await call('putInitializationResult', FUNCTION_ARN, null);
    await serve(handler);
}

main().catch((e) => {
    process.stderr.write(`the runtime failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(3);
});
