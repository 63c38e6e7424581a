//! Versioned migrations, one list per backend. The schema is the same; only column types differ.

/// (version, description, statements) for SQLite.
pub const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "outbox",
        r#"
CREATE TABLE IF NOT EXISTS payloads (
    id TEXT PRIMARY KEY,
    natural_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    user_id TEXT,
    reference_id TEXT,
    terra_reference TEXT,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (natural_key, version)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    payload_id TEXT NOT NULL REFERENCES payloads(id),
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_lease ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (destination, status, created_at);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    node TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at_us INTEGER NOT NULL,
    finished_at_us INTEGER NOT NULL,
    status_code INTEGER,
    class TEXT NOT NULL,
    error TEXT,
    response TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    delivery_id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS destination_state (
    name TEXT PRIMARY KEY,
    disabled INTEGER NOT NULL,
    reason TEXT,
    updated_at INTEGER NOT NULL
);
"#,
    ),
    (
        2,
        "oura connector",
        r#"
CREATE TABLE IF NOT EXISTS oura_users (
    user_id TEXT PRIMARY KEY,
    oura_user_id TEXT,
    reference_id TEXT,
    scopes TEXT,
    status TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    paused_reason TEXT,
    access_token TEXT,
    refresh_token TEXT,
    expires_at INTEGER,
    success_redirect TEXT,
    failure_redirect TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    connected_at INTEGER,
    last_webhook_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS oura_users_oura_id ON oura_users (oura_user_id) WHERE oura_user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS oura_users_reference ON oura_users (reference_id);
CREATE TABLE IF NOT EXISTS oura_notifications (
    id TEXT PRIMARY KEY,
    oura_user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_time TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    last_error TEXT,
    received_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (oura_user_id, data_type, object_id, event_type, event_time)
);
CREATE INDEX IF NOT EXISTS oura_notifications_due ON oura_notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS oura_notifications_lease ON oura_notifications (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS oura_documents (
    user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    day TEXT,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, data_type, object_id)
);
CREATE INDEX IF NOT EXISTS oura_documents_day ON oura_documents (user_id, day);
CREATE TABLE IF NOT EXISTS oura_subscriptions (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    data_type TEXT NOT NULL,
    callback_url TEXT NOT NULL,
    expiration_time TEXT,
    updated_at INTEGER NOT NULL
);
"#,
    ),
    (
        3,
        "history and backfill",
        r#"
CREATE TABLE IF NOT EXISTS oura_history_fetches (
    user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    day TEXT NOT NULL,
    fetched_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, data_type, day)
);
CREATE TABLE IF NOT EXISTS backfill_progress (
    user_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    day TEXT NOT NULL,
    records INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, event_type, day)
);
"#,
    ),
    (
        4,
        "oura rate budget and history requests",
        r#"
CREATE TABLE IF NOT EXISTS oura_rate_budget (
    app TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at INTEGER NOT NULL,
    paused_until INTEGER NOT NULL DEFAULT 0,
    pause_reason TEXT
);
CREATE TABLE IF NOT EXISTS history_requests (
    reference TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    status TEXT NOT NULL,
    error_status INTEGER,
    error TEXT,
    records INTEGER NOT NULL DEFAULT 0,
    expected_payloads INTEGER,
    payloads_sent INTEGER NOT NULL DEFAULT 0,
    rate_limit_hits INTEGER NOT NULL DEFAULT 0,
    retrying_at INTEGER,
    node TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS history_requests_user ON history_requests (user_id, created_at);
CREATE INDEX IF NOT EXISTS payloads_terra_reference ON payloads (terra_reference) WHERE terra_reference IS NOT NULL;
"#,
    ),
    (
        5,
        "oura polling and reconcile state",
        r#"
CREATE TABLE IF NOT EXISTS oura_poll_state (
    user_id TEXT NOT NULL,
    task TEXT NOT NULL,
    cursor_ms INTEGER,
    next_due_at INTEGER NOT NULL,
    last_run_at INTEGER,
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, task)
);
CREATE INDEX IF NOT EXISTS oura_poll_state_due ON oura_poll_state (task, next_due_at);
"#,
    ),
];

/// The same schema for PostgreSQL.
pub const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "outbox",
        r#"
CREATE TABLE IF NOT EXISTS payloads (
    id TEXT PRIMARY KEY,
    natural_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    user_id TEXT,
    reference_id TEXT,
    terra_reference TEXT,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (natural_key, version)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    payload_id TEXT NOT NULL REFERENCES payloads(id),
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_lease ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (destination, status, created_at);
CREATE TABLE IF NOT EXISTS attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    node TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    started_at_us BIGINT NOT NULL,
    finished_at_us BIGINT NOT NULL,
    status_code BIGINT,
    class TEXT NOT NULL,
    error TEXT,
    response TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    delivery_id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS destination_state (
    name TEXT PRIMARY KEY,
    disabled BIGINT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL
);
"#,
    ),
    (
        2,
        "oura connector",
        r#"
CREATE TABLE IF NOT EXISTS oura_users (
    user_id TEXT PRIMARY KEY,
    oura_user_id TEXT,
    reference_id TEXT,
    scopes TEXT,
    status TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    paused_reason TEXT,
    access_token TEXT,
    refresh_token TEXT,
    expires_at BIGINT,
    success_redirect TEXT,
    failure_redirect TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    connected_at BIGINT,
    last_webhook_at BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS oura_users_oura_id ON oura_users (oura_user_id) WHERE oura_user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS oura_users_reference ON oura_users (reference_id);
CREATE TABLE IF NOT EXISTS oura_notifications (
    id TEXT PRIMARY KEY,
    oura_user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_time TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    last_error TEXT,
    received_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (oura_user_id, data_type, object_id, event_type, event_time)
);
CREATE INDEX IF NOT EXISTS oura_notifications_due ON oura_notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS oura_notifications_lease ON oura_notifications (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS oura_documents (
    user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    day TEXT,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, data_type, object_id)
);
CREATE INDEX IF NOT EXISTS oura_documents_day ON oura_documents (user_id, day);
CREATE TABLE IF NOT EXISTS oura_subscriptions (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    data_type TEXT NOT NULL,
    callback_url TEXT NOT NULL,
    expiration_time TEXT,
    updated_at BIGINT NOT NULL
);
"#,
    ),
    (
        3,
        "history and backfill",
        r#"
CREATE TABLE IF NOT EXISTS oura_history_fetches (
    user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    day TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, data_type, day)
);
CREATE TABLE IF NOT EXISTS backfill_progress (
    user_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    day TEXT NOT NULL,
    records BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_type, day)
);
"#,
    ),
    (
        4,
        "oura rate budget and history requests",
        r#"
CREATE TABLE IF NOT EXISTS oura_rate_budget (
    app TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL,
    paused_until BIGINT NOT NULL DEFAULT 0,
    pause_reason TEXT
);
CREATE TABLE IF NOT EXISTS history_requests (
    reference TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    user_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    status TEXT NOT NULL,
    error_status BIGINT,
    error TEXT,
    records BIGINT NOT NULL DEFAULT 0,
    expected_payloads BIGINT,
    payloads_sent BIGINT NOT NULL DEFAULT 0,
    rate_limit_hits BIGINT NOT NULL DEFAULT 0,
    retrying_at BIGINT,
    node TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX IF NOT EXISTS history_requests_user ON history_requests (user_id, created_at);
CREATE INDEX IF NOT EXISTS payloads_terra_reference ON payloads (terra_reference) WHERE terra_reference IS NOT NULL;
"#,
    ),
    (
        5,
        "oura polling and reconcile state",
        r#"
CREATE TABLE IF NOT EXISTS oura_poll_state (
    user_id TEXT NOT NULL,
    task TEXT NOT NULL,
    cursor_ms BIGINT,
    next_due_at BIGINT NOT NULL,
    last_run_at BIGINT,
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, task)
);
CREATE INDEX IF NOT EXISTS oura_poll_state_due ON oura_poll_state (task, next_due_at);
"#,
    ),
];
