-- Long-term memory items. The tenant is the namespace's first segment; row-level security
-- lets a connection scoped to one tenant (role brainops_tenant + setting brainops.tenant)
-- see and write only that tenant's rows. The table owner (the unscoped store) is not bound.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE brainops_memory_meta (
    id       int PRIMARY KEY CHECK (id = 1),
    embedder text NOT NULL,
    dims     int NOT NULL
);

CREATE TABLE brainops_memory_items (
    id         bigserial PRIMARY KEY,
    ns         text NOT NULL,
    tenant     text GENERATED ALWAYS AS (split_part(ns, '/', 1)) STORED,
    key        text NOT NULL,
    value      jsonb NOT NULL,
    search     tsvector NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    UNIQUE (ns, key)
);
CREATE INDEX brainops_memory_items_ns ON brainops_memory_items (ns text_pattern_ops);
CREATE INDEX brainops_memory_items_search ON brainops_memory_items USING gin (search);
CREATE INDEX brainops_memory_items_value ON brainops_memory_items USING gin (value jsonb_path_ops);
CREATE INDEX brainops_memory_items_expiry ON brainops_memory_items (expires_at) WHERE expires_at IS NOT NULL;

-- Roles are cluster-wide, and several databases may migrate at once.
DO $$
BEGIN
    CREATE ROLE brainops_tenant NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
    EXECUTE format('GRANT brainops_tenant TO %I', current_user);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO brainops_tenant', current_schema());
EXCEPTION WHEN duplicate_object OR unique_violation OR invalid_grant_operation THEN NULL;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON brainops_memory_items TO brainops_tenant;
GRANT SELECT ON brainops_memory_meta TO brainops_tenant;
GRANT USAGE ON SEQUENCE brainops_memory_items_id_seq TO brainops_tenant;

ALTER TABLE brainops_memory_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY brainops_memory_items_tenant ON brainops_memory_items
    USING (tenant = current_setting('brainops.tenant', true))
    WITH CHECK (tenant = current_setting('brainops.tenant', true));
