/*
 * Evergreen's own code: the HTTP client of Evergreen's Lambda IPC endpoint, as
 * `aws-greengrass-core-sdk` (npm) expects the Greengrass V1 core's IPCClient: invoke
 * (postWork), result fetch (getWorkResult), and the worker side the runtime loop uses
 * (getWork, postWorkResult, postHandlerErr, putInitializationResult). Every non-2xx answer or
 * connection failure is an Error to the callback; nothing is retried.
 */
'use strict';

const http = require('http');

const API = '2016-11-01';
const HEADER_INVOCATION_ID = 'x-amz-invocationid';
const HEADER_CLIENT_CONTEXT = 'X-Amz-Client-Context';
const HEADER_INVOCATION_TYPE = 'X-Amz-Invocation-Type';
const HEADER_FUNCTION_ERROR = 'x-amz-function-error';
const HEADER_DEADLINE = 'lambda-runtime-deadline-ms';

function bodyOf(payload) {
    if (payload === undefined || payload === null) {
        return Buffer.alloc(0);
    }
    if (Buffer.isBuffer(payload)) {
        return payload;
    }
    if (typeof payload === 'string') {
        return Buffer.from(payload, 'utf8');
    }
    if (ArrayBuffer.isView(payload)) {
        return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    }
    return Buffer.from(JSON.stringify(payload), 'utf8');
}

class IPCClient {
    constructor(authToken, host, port) {
        this.authToken = authToken === undefined ? (process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN || '') : authToken;
        this.host = host || 'localhost';
        this.port = Number(port || process.env.GG_DAEMON_PORT || 8000);
    }

    /** One request; `callback(err, statusCode, headers, bodyBuffer)`. No timeout: the endpoint bounds every wait. */
    request(method, path, body, headers, callback) {
        const data = bodyOf(body);
        const all = Object.assign({ Authorization: this.authToken || '', 'Content-Length': data.length }, headers || {});
        const req = http.request({
            host: this.host, port: this.port, method, path: `/${API}/${path}`, headers: all, agent: false,
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                const buf = Buffer.concat(chunks);
                if (res.statusCode < 200 || res.statusCode > 299) {
                    callback(new Error(`${method} ${path} refused: HTTP ${res.statusCode}: ${buf.toString('utf8')}`));
                    return;
                }
                callback(null, res.statusCode, res.headers, buf);
            });
            res.on('error', (e) => callback(new Error(`${method} ${path} failed: ${e.message}`)));
        });
        req.on('error', (e) => callback(new Error(`${method} ${path} failed: ${e.message}`)));
        req.end(data);
    }

    // --- caller side ---------------------------------------------------------------------------
    postWork(functionArn, payload, clientContext, invocationType, callback) {
        this.request('POST', `functions/${functionArn}`, payload, {
            [HEADER_CLIENT_CONTEXT]: clientContext ? String(clientContext) : '',
            [HEADER_INVOCATION_TYPE]: invocationType || 'RequestResponse',
        }, (err, status, headers) => {
            if (err) {
                callback(err, null);
                return;
            }
            callback(null, headers[HEADER_INVOCATION_ID]);
        });
    }

    /** `callback(err, body, functionError, statusCode)`; the body as text, as the SDK parses it. */
    getWorkResult(functionArn, invocationId, callback) {
        this.request('GET', `functions/${functionArn}`, null, { 'X-Amz-InvocationId': invocationId },
            (err, status, headers, body) => {
                if (err) {
                    callback(err);
                    return;
                }
                callback(null, body.toString('utf8'), headers[HEADER_FUNCTION_ERROR] || '', status);
            });
    }

    // --- worker side ---------------------------------------------------------------------------
    /** The next invocation `{invocationId, payload, clientContext, deadlineMs}`, or null after an empty long poll. */
    getWork(functionArn, callback) {
        this.request('GET', `functions/${functionArn}/work`, null, {}, (err, status, headers, body) => {
            if (err) {
                callback(err);
                return;
            }
            if (status === 204) {
                callback(null, null);
                return;
            }
            const deadline = Number(headers[HEADER_DEADLINE]);
            callback(null, {
                invocationId: headers[HEADER_INVOCATION_ID],
                payload: body,
                clientContext: headers[HEADER_CLIENT_CONTEXT.toLowerCase()] || '',
                deadlineMs: Number.isFinite(deadline) && deadline > 0 ? deadline : null,
            });
        });
    }

    postWorkResult(functionArn, invocationId, payload, callback) {
        this.request('POST', `functions/${functionArn}/work`, payload, { 'X-Amz-InvocationId': invocationId },
            (err) => callback(err || null));
    }

    postHandlerErr(functionArn, invocationId, error, callback) {
        this.request('POST', `functions/${functionArn}/work`, JSON.stringify(error),
            { 'X-Amz-InvocationId': invocationId, 'X-Amz-Function-Error': 'Handled' }, (err) => callback(err || null));
    }

    putInitializationResult(functionArn, error, callback) {
        const doc = error ? { Success: false, Response: `${error.name || 'Error'}(${JSON.stringify(String(error.message || error))})` }
            : { Success: true, Response: '' };
        this.request('PUT', `functions/${functionArn}/initialized`, JSON.stringify(doc), {}, (err) => callback(err || null));
    }
}

module.exports = IPCClient;
