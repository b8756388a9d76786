/*
 * Evergreen's own code: the module `aws-greengrass-core-sdk` (npm) requires but does not ship;
 * the Greengrass V1 core provided it. What the runtime tells a function about itself (read once),
 * the function ARN helpers the SDK calls, and the SDK's logger (lines on stderr, which reach the
 * function's log with their level).
 */
'use strict';

const env = process.env;

const envVars = {
    MY_FUNCTION_ARN: env.MY_FUNCTION_ARN,
    ROUTER_FUNCTION_ARN: env.ROUTER_FUNCTION_ARN || 'arn:aws:lambda:::function:GGRouter',
    SHADOW_FUNCTION_ARN: env.SHADOW_FUNCTION_ARN || 'arn:aws:lambda:::function:GGShadowService',
    SECRETS_MANAGER_FUNCTION_ARN: env.SECRETS_MANAGER_FUNCTION_ARN || 'arn:aws:lambda:::function:GGSecretManager:1',
    AUTH_TOKEN: env.AWS_CONTAINER_AUTHORIZATION_TOKEN,
    ENCODING_TYPE: env.ENCODING_TYPE || 'json',
    GGC_MAX_INTERFACE_VERSION: env.GGC_MAX_INTERFACE_VERSION || '1.5',
};

/** The parts of a function ARN `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`. */
class FunctionArnFields {
    constructor(arn) {
        const fields = String(arn).split(':');
        if (fields.length < 7 || fields.length > 8 || fields[0] !== 'arn' || fields[2] !== 'lambda' || fields[5] !== 'function') {
            throw new Error(`"${arn}" is not a function ARN (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>])`);
        }
        this.arn = String(arn);
        this.region = fields[3];
        this.account = fields[4];
        this.name = fields[6];
        this.qualifier = fields.length === 8 ? fields[7] : undefined;
        this.unqualifiedArn = fields.slice(0, 7).join(':');
    }
}

function buildFunctionArn(unqualifiedArn, qualifier) {
    return qualifier ? `${unqualifiedArn}:${qualifier}` : unqualifiedArn;
}

/** The SDK's logger: `[LEVEL] name: message` lines on stderr. */
class LocalWatchLogger {
    constructor(name) {
        this.name = name || 'aws-greengrass-core-sdk';
    }

    write(level, message) {
        process.stderr.write(`[${level}] ${this.name}: ${message}\n`);
    }

    debug(message) { this.write('DEBUG', message); }

    info(message) { this.write('INFO', message); }

    warn(message) { this.write('WARN', message); }

    error(message) { this.write('ERROR', message); }
}

module.exports = {
    envVars,
    FunctionArnFields,
    buildFunctionArn,
    logging: { LocalWatchLogger },
};
