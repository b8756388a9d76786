//! Tests of validation: loggers.

use super::*;

bad_fixture!(
    bad_logger_values,
    "logger-values",
    [
        (
            &format!("{L}[0].Component"),
            "`System` is not a logger component"
        ),
        (&format!("{L}[1].Level"), "`VERBOSE` is not a level"),
        (&format!("{L}[2].Type"), "`Syslog` is not a logger type"),
        (&format!("{L}[3].Space"), "positive number of KB (found 0)"),
    ]
);

bad_fixture!(
    bad_logger_duplicate_type,
    "logger-duplicate-type",
    [(
        &format!("{L}[1].Type"),
        "a second FileSystem logger for Lambda"
    )]
);
