-- The state store's tables as Courtship wrote them before its schema had a version (version 1),
-- verbatim: tests/test_state_versions.py builds a store of that version from it.
CREATE TABLE IF NOT EXISTS runs (at TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS fired (
    playbook TEXT, customer_id TEXT, at TEXT, PRIMARY KEY (playbook, customer_id, at));
CREATE TABLE IF NOT EXISTS enrollments (
    playbook TEXT, customer_id TEXT, started_at TEXT, step INTEGER, due_at TEXT,
    status TEXT, context TEXT, PRIMARY KEY (playbook, customer_id, started_at));
CREATE TABLE IF NOT EXISTS sends (
    key TEXT PRIMARY KEY, customer_id TEXT, playbook TEXT, channel TEXT, category TEXT,
    tone TEXT, dedup_key TEXT, at TEXT, due_at TEXT, status TEXT, subject TEXT, text TEXT,
    channels TEXT, addresses TEXT, hours_since_last_inbound REAL, unsubscribe_url TEXT,
    max_segments INTEGER, attempts INTEGER DEFAULT 0, provider_id TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS sends_due ON sends (status, due_at);
CREATE TABLE IF NOT EXISTS attempts (
    key TEXT, attempt INTEGER, at TEXT, channel TEXT, status TEXT, reason TEXT,
    PRIMARY KEY (key, attempt));
CREATE INDEX IF NOT EXISTS sends_customer ON sends (customer_id, at);
CREATE TABLE IF NOT EXISTS facts (
    customer_id TEXT, fact TEXT, value TEXT, type TEXT, at TEXT, PRIMARY KEY (customer_id, fact));
CREATE TABLE IF NOT EXISTS tags (customer_id TEXT, tag TEXT, PRIMARY KEY (customer_id, tag));
CREATE TABLE IF NOT EXISTS tagged (
    customer_id TEXT, tag TEXT, present INTEGER, PRIMARY KEY (customer_id, tag));
INSERT OR IGNORE INTO tagged SELECT customer_id, tag, 1 FROM tags;
CREATE TABLE IF NOT EXISTS consent_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, channel TEXT, customer_id TEXT,
    address TEXT, change TEXT, scope TEXT, source TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, source TEXT, kind TEXT, channel TEXT,
    provider_id TEXT, address TEXT, send_key TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS callbacks_kind ON callbacks (kind, channel, address);
CREATE TABLE IF NOT EXISTS decisions (
    at TEXT, customer_id TEXT, recipient_id TEXT, playbook TEXT, version TEXT, step INTEGER,
    step_id TEXT, category TEXT, template TEXT, to_whom TEXT, wanted TEXT, channel TEXT,
    tone TEXT, status TEXT, guard TEXT, reason TEXT, due_at TEXT, key TEXT, decided_by TEXT,
    PRIMARY KEY (at, playbook, customer_id, recipient_id, step_id, key));
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, at);
CREATE INDEX IF NOT EXISTS decisions_recipient ON decisions (recipient_id, at);
CREATE TABLE IF NOT EXISTS assignments (
    playbook TEXT, customer_id TEXT, step_id TEXT, arm TEXT, at TEXT,
    PRIMARY KEY (playbook, customer_id, step_id));
CREATE TABLE IF NOT EXISTS test_sends (
    at TEXT, seed TEXT, playbook TEXT, step_id TEXT, language TEXT, tone TEXT, channel TEXT,
    address TEXT, subject TEXT, status TEXT, reason TEXT);
