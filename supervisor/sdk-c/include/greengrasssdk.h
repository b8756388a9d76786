/*
 * greengrasssdk.h: Evergreen's header for the Greengrass V1 Core SDK for C.
 *
 * Copyright the Evergreen authors. Licensed under the Apache License 2.0.
 *
 * Written by Evergreen from the documented API of the AWS Greengrass Core SDK
 * for C (function names, types, enumerators and their values, and semantics),
 * so that a V1 native function compiles and links unchanged against
 * Evergreen's libaws-greengrass-core-sdk-c.so. What Evergreen does where the
 * documentation is silent is said next to each declaration and in
 * docs/c-functions.md.
 */
#ifndef _GREENGRASS_SDK_H_
#define _GREENGRASS_SDK_H_

#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- types -- */

/* What every gg_* call returns. */
typedef enum gg_error {
    GGE_SUCCESS = 0,        /* the call did what it was asked */
    GGE_OUT_OF_MEMORY,      /* an allocation failed */
    GGE_INVALID_PARAMETER,  /* an argument is NULL, out of range or malformed */
    GGE_INVALID_STATE,      /* called out of order (before gg_global_init, outside a handler, twice) */
    GGE_INTERNAL_FAILURE,   /* the core could not be reached or answered nonsense */

    GGE_RESERVED_MAX,
    GGE_RESERVED_PAD = 0x7FFFFFFF
} gg_error;

/* One API request's context: made by gg_request_init, freed by gg_request_close.
 * After a call, gg_request_read returns its answer (or the error text). */
typedef struct _gg_request *gg_request;

/* How the core answered a request (in gg_request_result). */
typedef enum gg_request_status {
    GG_REQUEST_SUCCESS = 0, /* answered as asked */
    GG_REQUEST_HANDLED,     /* the target answered with an error (gg_lambda_handler_write_error,
                               a rejected shadow request, a refused secret) */
    GG_REQUEST_UNHANDLED,   /* the target failed (crashed, timed out, was stopped) */
    GG_REQUEST_UNKNOWN,     /* the core refused the request; gg_request_read has why */
    GG_REQUEST_AGAIN,       /* throttled (a full queue): try again later */

    GG_REQUEST_RESERVED_MAX,
    GG_REQUEST_RESERVED_PAD = 0x7FFFFFFF
} gg_request_status;

typedef struct gg_request_result {
    gg_request_status request_status;
} gg_request_result;

/* What a handler is told about its invocation. Both strings are NUL-terminated
 * and valid until the handler returns. */
typedef struct gg_lambda_context {
    const char *function_arn;   /* this function's qualified ARN */
    const char *client_context; /* the caller's client context as sent: base64 of a JSON
                                   document; for a subscription delivery its
                                   custom.subject is the topic. "" when none. */
} gg_lambda_context;

typedef enum gg_invoke_type {
    GG_INVOKE_EVENT,            /* asynchronous: no answer */
    GG_INVOKE_REQUEST_RESPONSE, /* synchronous: gg_request_read returns the answer */

    GG_INVOKE_RESERVED_MAX,
    GG_INVOKE_RESERVED_PAD = 0x7FFFFFFF
} gg_invoke_type;

/* Flags of gg_runtime_start. */
typedef enum gg_runtime_opt {
    /* Run the handler loop on a new thread and return at once; the process
     * (and the loop) ends when main returns. */
    GG_RT_OPT_ASYNC = 0x1,
    GG_RT_OPT_RESERVED_PAD = 0x7FFFFFFF
} gg_runtime_opt;

typedef struct gg_invoke_options {
    const char *function_arn;     /* full ARN of the function to invoke */
    const char *customer_context; /* base64 of a JSON document, or NULL */
    const char *qualifier;        /* version or alias, or NULL (must agree with the ARN's) */
    gg_invoke_type type;
    const void *payload;          /* may be NULL when payload_size is 0 */
    size_t payload_size;
} gg_invoke_options;

/* What a publish does when a target's queue is full. */
typedef enum gg_queue_full_policy_options {
    /* deliver to every target that has room (the default) */
    GG_QUEUE_FULL_POLICY_BEST_EFFORT,
    /* deliver to every target, or answer GG_REQUEST_AGAIN */
    GG_QUEUE_FULL_POLICY_ALL_OR_ERROR,

    GG_QUEUE_FULL_POLICY_RESERVED_MAX,
    GG_QUEUE_FULL_POLICY_RESERVED_PAD = 0x7FFFFFFF
} gg_queue_full_policy_options;

/* Options of gg_publish_with_options: made by gg_publish_options_init, freed
 * by gg_publish_options_free. */
typedef struct _gg_publish_options *gg_publish_options;

typedef enum gg_log_level {
    GG_LOG_RESERVED_NOTSET,

    GG_LOG_DEBUG,
    GG_LOG_INFO,
    GG_LOG_WARN,
    GG_LOG_ERROR,
    GG_LOG_FATAL,

    GG_LOG_RESERVED_MAX,
    GG_LOG_RESERVED_PAD = 0x7FFFFFFF
} gg_log_level;

/* ---------------------------------------------------------------- setup -- */

/* Reads the function's environment (the core's endpoint, token and ARNs).
 * opt must be 0. Call it once, first, before starting threads. */
gg_error gg_global_init(uint32_t opt);

/* printf-style line to the function's log at `level` (each line of a
 * multi-line message is its own log line). Works before gg_global_init. */
gg_error gg_log(gg_log_level level, const char *format, ...);

/* ------------------------------------------------------------- requests -- */

gg_error gg_request_init(gg_request *ggreq);
gg_error gg_request_close(gg_request ggreq);

/* Copies the next part of the last call's answer into buffer; call it until
 * *amount_read is 0. */
gg_error gg_request_read(gg_request ggreq, void *buffer, size_t buffer_size,
                         size_t *amount_read);

/* -------------------------------------------------------------- runtime -- */

typedef void (*gg_lambda_handler)(const gg_lambda_context *cxt);

/* Takes invocations from the core and calls handler for each, one at a time.
 * Without GG_RT_OPT_ASYNC it does not return while the core serves the
 * function. It sets SIGTERM back to its default action: the core stops a
 * function with SIGTERM. */
gg_error gg_runtime_start(gg_lambda_handler handler, uint32_t opt);

/* In a handler: copies the next part of the event into buffer; call it until
 * *amount_read is 0. */
gg_error gg_lambda_handler_read(void *buffer, size_t buffer_size,
                                size_t *amount_read);

/* In a handler: answers the invocation (once). A handler that writes nothing
 * answers with an empty response. */
gg_error gg_lambda_handler_write_response(const void *response,
                                          size_t response_size);

/* In a handler: answers the invocation with an error; the caller's request
 * status is GG_REQUEST_HANDLED. */
gg_error gg_lambda_handler_write_error(const char *error_message);

/* -------------------------------------------------------------- secrets -- */

/* The value of a secret resource granted to this function, as the
 * GetSecretValue JSON document. version_id must be NULL (not supported, as
 * in the Python SDK: the answer is GG_REQUEST_HANDLED); version_stage may be
 * NULL (AWSCURRENT). */
gg_error gg_get_secret_value(gg_request ggreq, const char *secret_id,
                             const char *version_id, const char *version_stage,
                             gg_request_result *result);

/* --------------------------------------------------------------- lambda -- */

gg_error gg_invoke(gg_request ggreq, const gg_invoke_options *opts,
                   gg_request_result *result);

/* -------------------------------------------------------------- AWS IoT -- */

gg_error gg_publish_options_init(gg_publish_options *opts);
gg_error gg_publish_options_free(gg_publish_options opts);
gg_error gg_publish_options_set_queue_full_policy(gg_publish_options opts,
                                                  gg_queue_full_policy_options policy);

/* Publishes payload on topic through the group's subscriptions (QoS 0).
 * opts may be NULL (no queue-full policy: best effort). */
gg_error gg_publish_with_options(gg_request ggreq, const char *topic,
                                 const void *payload, size_t payload_size,
                                 const gg_publish_options opts,
                                 gg_request_result *result);

/* gg_publish_with_options with opts NULL. */
gg_error gg_publish(gg_request ggreq, const char *topic, const void *payload,
                    size_t payload_size, gg_request_result *result);

/* Local shadow service: the answer (gg_request_read) is the accepted document,
 * or with GG_REQUEST_HANDLED the rejection ({"code":..,"message":..}). */
gg_error gg_get_thing_shadow(gg_request ggreq, const char *thing_name,
                             gg_request_result *result);
gg_error gg_update_thing_shadow(gg_request ggreq, const char *thing_name,
                                const char *update_payload,
                                gg_request_result *result);
gg_error gg_delete_thing_shadow(gg_request ggreq, const char *thing_name,
                                gg_request_result *result);

#ifdef __cplusplus
}
#endif

#endif /* _GREENGRASS_SDK_H_ */
