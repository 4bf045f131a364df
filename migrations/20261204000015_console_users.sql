-- Named console accounts (docs/design.md, rule L2): one row per person, made and changed with
-- `ticketing-tracker console-user`. The password is kept as its PBKDF2 hash only
-- (`pbkdf2-sha256:ITERATIONS:SALT:HASH`, the format of console-hash). A run of wrong passwords
-- locks the account until `locked_until` (rule L3); the lock is written with the database's
-- time, so every replica reads the same lock.
CREATE TABLE ticketing_console_users (
    id            bigserial   PRIMARY KEY,
    name          text        NOT NULL UNIQUE
                  CONSTRAINT console_user_name_plain CHECK (name ~ '^[A-Za-z0-9._@-]{1,40}$'),
    role          text        NOT NULL
                  CONSTRAINT console_user_role_known CHECK (role IN ('viewer', 'operator')),
    password_hash text        NOT NULL
                  CONSTRAINT console_user_hash_pbkdf2 CHECK (password_hash LIKE 'pbkdf2-sha256:%'),
    -- Set by `console-user disable`: the account logs in no more, and its sessions end at
    -- their next request (rule L2); the row stays, as the record of who it was.
    disabled_at   timestamptz,
    -- Wrong passwords since the last right one (or the last reset).
    failed_logins integer     NOT NULL DEFAULT 0 CONSTRAINT console_user_failed_counted CHECK (failed_logins >= 0),
    locked_until  timestamptz,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT ticketing_now(),
    updated_at    timestamptz NOT NULL DEFAULT ticketing_now()
);
