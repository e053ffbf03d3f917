-- sql/ferry--0.1.0.sql -- install script of the ferry extension, version 0.1.0.
-- The API is documented in docs/sql-api.md; the C half lives in extension/.

\echo Use "CREATE EXTENSION ferry" to load this file. \quit

-- ----------------------------------------------------------------
-- Catalog
-- ----------------------------------------------------------------

CREATE TABLE ferry.synced_tables (
    tbl             regclass PRIMARY KEY,        -- the synced table
    tenant_column   name NOT NULL,               -- its tenant column
    key_columns     name[] NOT NULL,             -- primary key, in key order
    columns         name[] NOT NULL,             -- client-visible columns, for DDL checks
    column_types    text[] NOT NULL,             -- their types (format_type)
    purge_horizon   xid8,                        -- newest xid whose history was purged
    enabled_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ferry.rules (
    tbl             regclass NOT NULL REFERENCES ferry.synced_tables ON DELETE CASCADE,
    name            text NOT NULL,
    read_predicate  text NOT NULL,
    write_predicate text,                        -- NULL: the read predicate governs writes
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, name)
);

CREATE TABLE ferry.conflict_rules (
    tbl             regclass NOT NULL REFERENCES ferry.synced_tables ON DELETE CASCADE,
    col             name NOT NULL,
    rule            text NOT NULL CHECK (rule IN ('lww', 'version', 'manual', 'set_union', 'counter', 'immutable')),
    PRIMARY KEY (tbl, col)
);

CREATE TABLE ferry.mutations (
    id              uuid PRIMARY KEY,            -- the client's mutation id
    client_id       text NOT NULL,
    sub             text NOT NULL,               -- user that sent it
    status          text NOT NULL,               -- applied / conflict / rejected
    result          jsonb,                       -- the result returned then
    applied_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mutations_applied_at_idx ON ferry.mutations (applied_at);

CREATE TABLE ferry.state (
    singleton                   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    schema_version              bigint NOT NULL DEFAULT 1,
    min_client_schema_version   bigint NOT NULL DEFAULT 1
);
INSERT INTO ferry.state DEFAULT VALUES;

SELECT pg_catalog.pg_extension_config_dump('ferry.synced_tables', '');
SELECT pg_catalog.pg_extension_config_dump('ferry.rules', '');
SELECT pg_catalog.pg_extension_config_dump('ferry.conflict_rules', '');

-- Any change to the catalog drops the backends' cached view of that table.
CREATE FUNCTION ferry._invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'ferry_invalidate_trigger' LANGUAGE C;
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE ON ferry.synced_tables
    FOR EACH ROW EXECUTE FUNCTION ferry._invalidate();
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE ON ferry.rules
    FOR EACH ROW EXECUTE FUNCTION ferry._invalidate();
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE ON ferry.conflict_rules
    FOR EACH ROW EXECUTE FUNCTION ferry._invalidate();

-- The gateway reads publication ferry. ferry's own catalog is in it too, so that
-- changes to rules and synced tables reach the gateway in order with the data.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'ferry') THEN
        CREATE PUBLICATION ferry;
    END IF;
    ALTER PUBLICATION ferry ADD TABLE ferry.synced_tables, ferry.rules, ferry.conflict_rules, ferry.state;
END $$;

-- ----------------------------------------------------------------
-- C functions
-- ----------------------------------------------------------------

CREATE FUNCTION ferry.row_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'ferry_row_trigger' LANGUAGE C;

CREATE FUNCTION ferry.claim(name text) RETURNS text
    AS 'MODULE_PATHNAME', 'ferry_claim' LANGUAGE C STABLE PARALLEL RESTRICTED;

CREATE FUNCTION ferry._validate_predicate(tbl regclass, predicate text) RETURNS void
    AS 'MODULE_PATHNAME', 'ferry_validate_predicate_sql' LANGUAGE C STRICT;

CREATE FUNCTION ferry.apply_mutation(mutation jsonb, claims jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'ferry_apply_mutation' LANGUAGE C VOLATILE;

CREATE FUNCTION ferry.changes_since(tbl regclass, cursor text, claims jsonb, max_rows int DEFAULT 1000)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'ferry_changes_since' LANGUAGE C STABLE;

CREATE FUNCTION ferry._purge_table(tbl regclass, older_than interval) RETURNS bigint
    AS 'MODULE_PATHNAME', 'ferry_purge_table' LANGUAGE C;

-- ----------------------------------------------------------------
-- Joining and leaving sync
-- ----------------------------------------------------------------

-- ferry._columns returns the client-visible columns of tbl and their types.
CREATE FUNCTION ferry._columns(tbl regclass, OUT columns name[], OUT column_types text[])
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(a.attname ORDER BY a.attnum), '{}'),
           coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum), '{}')
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname NOT LIKE 'ferry\_%'
$$;

-- ferry._key_columns returns tbl's primary key columns in key order, or NULL.
CREATE FUNCTION ferry._key_columns(tbl regclass) RETURNS name[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(a.attname ORDER BY k.ord)
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = tbl AND i.indisprimary
$$;

CREATE FUNCTION ferry.enable_sync(tbl regclass, tenant_column name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rel     pg_class%ROWTYPE;
    prev    ferry.synced_tables%ROWTYPE;
    att     pg_attribute%ROWTYPE;
    keys    name[];
    cols    record;
    kind    text;
BEGIN
    SELECT * INTO prev FROM ferry.synced_tables s WHERE s.tbl = enable_sync.tbl;
    IF FOUND THEN
        IF prev.tenant_column <> enable_sync.tenant_column THEN
            RAISE EXCEPTION 'table % is already synced with tenant column "%"', tbl, prev.tenant_column
                USING ERRCODE = 'FY010',
                      HINT = 'Call ferry.disable_sync first to change the tenant column.';
        END IF;
        RETURN;
    END IF;

    SELECT * INTO rel FROM pg_class WHERE oid = tbl;
    kind := CASE rel.relkind WHEN 'r' THEN NULL WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view'
                 WHEN 'p' THEN 'a partitioned table' WHEN 'f' THEN 'a foreign table' ELSE 'not a table' END;
    IF kind IS NULL AND rel.relispartition THEN kind := 'a partition'; END IF;
    IF kind IS NULL AND rel.relpersistence = 't' THEN kind := 'a temporary table'; END IF;
    IF kind IS NULL AND rel.relpersistence = 'u' THEN kind := 'an unlogged table'; END IF;
    IF kind IS NULL AND rel.relnamespace = 'ferry'::regnamespace THEN kind := 'a table of ferry itself'; END IF;
    IF kind IS NOT NULL THEN
        RAISE EXCEPTION 'cannot sync %: it is %', tbl, kind
            USING ERRCODE = 'FY010',
                  HINT = 'Only ordinary, permanent (logged) tables can be synced: their changes must reach the write-ahead log.';
    END IF;

    keys := ferry._key_columns(tbl);
    IF keys IS NULL THEN
        RAISE EXCEPTION 'cannot sync %: it has no primary key', tbl
            USING ERRCODE = 'FY010',
                  HINT = 'Add a primary key (clients address rows by it), e.g. a uuid column.';
    END IF;

    SELECT * INTO att FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = enable_sync.tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot sync %: tenant column "%" does not exist', tbl, tenant_column
            USING ERRCODE = '42703';
    END IF;
    IF NOT att.attnotnull THEN
        RAISE EXCEPTION 'cannot sync %: tenant column "%" is nullable', tbl, tenant_column
            USING ERRCODE = 'FY010',
                  HINT = format('A row without a tenant is visible to no one. Run ALTER TABLE %s ALTER COLUMN %I SET NOT NULL first.', tbl, tenant_column);
    END IF;
    IF tenant_column LIKE 'ferry\_%' THEN
        RAISE EXCEPTION 'cannot sync %: the tenant column cannot be a ferry_ column', tbl USING ERRCODE = 'FY010';
    END IF;

    EXECUTE format($f$ALTER TABLE %s
        ADD COLUMN IF NOT EXISTS ferry_version bigint NOT NULL DEFAULT 1,
        ADD COLUMN IF NOT EXISTS ferry_updated_at timestamptz NOT NULL DEFAULT now(),
        ADD COLUMN IF NOT EXISTS ferry_deleted_at timestamptz,
        ADD COLUMN IF NOT EXISTS ferry_xid xid8,
        ADD COLUMN IF NOT EXISTS ferry_clock jsonb NOT NULL DEFAULT '{}'$f$, tbl);
    -- A column of that name that was already there must have the right type.
    PERFORM 1 FROM (VALUES ('ferry_version', 'bigint'), ('ferry_updated_at', 'timestamp with time zone'),
                           ('ferry_deleted_at', 'timestamp with time zone'), ('ferry_xid', 'xid8'),
                           ('ferry_clock', 'jsonb')) AS want(col, typ)
      LEFT JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = want.col AND NOT a.attisdropped
     WHERE a.attname IS NULL OR format_type(a.atttypid, a.atttypmod) <> want.typ;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot sync %: it has a ferry_ column of the wrong type', tbl
            USING ERRCODE = 'FY010',
                  HINT = 'Columns named ferry_* are reserved for ferry; rename yours.';
    END IF;

    EXECUTE format('CREATE TRIGGER zz_ferry_row BEFORE INSERT OR UPDATE OR DELETE ON %s
                    FOR EACH ROW EXECUTE FUNCTION ferry.row_trigger()', tbl);
    EXECUTE format('CREATE TRIGGER zz_ferry_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION ferry._on_truncate()', tbl);
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', tbl);
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'ferry') THEN
        CREATE PUBLICATION ferry;
    END IF;
    EXECUTE format('ALTER PUBLICATION ferry ADD TABLE %s', tbl);

    SELECT * INTO cols FROM ferry._columns(tbl);
    INSERT INTO ferry.synced_tables (tbl, tenant_column, key_columns, columns, column_types)
    VALUES (tbl, tenant_column, keys, cols.columns, cols.column_types);
END $$;

CREATE FUNCTION ferry.disable_sync(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ferry.synced_tables s WHERE s.tbl = disable_sync.tbl) THEN
        RAISE EXCEPTION 'table % is not synced', tbl USING ERRCODE = 'FY011';
    END IF;
    -- Tombstones are deleted rows: they go, with the trigger that keeps them.
    PERFORM ferry._purge_table(tbl, NULL);
    DELETE FROM ferry.synced_tables s WHERE s.tbl = disable_sync.tbl;
    EXECUTE format('DROP TRIGGER IF EXISTS zz_ferry_row ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS zz_ferry_truncate ON %s', tbl);
    IF EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                WHERE p.pubname = 'ferry' AND r.prrelid = tbl) THEN
        EXECUTE format('ALTER PUBLICATION ferry DROP TABLE %s', tbl);
    END IF;
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY DEFAULT,
        DROP COLUMN IF EXISTS ferry_version, DROP COLUMN IF EXISTS ferry_updated_at,
        DROP COLUMN IF EXISTS ferry_deleted_at, DROP COLUMN IF EXISTS ferry_xid,
        DROP COLUMN IF EXISTS ferry_clock', tbl);
END $$;

CREATE FUNCTION ferry._on_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ferry.synced_tables
       SET purge_horizon = greatest(purge_horizon, pg_current_xact_id())
     WHERE tbl = TG_RELID;
    RETURN NULL;
END $$;

CREATE FUNCTION ferry.purge_tombstones(older_than interval DEFAULT '30 days') RETURNS bigint
LANGUAGE sql AS $$
    SELECT coalesce(sum(ferry._purge_table(tbl, older_than)), 0)::bigint FROM ferry.synced_tables
$$;

-- ----------------------------------------------------------------
-- Rules
-- ----------------------------------------------------------------

CREATE FUNCTION ferry._require_synced(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ferry.synced_tables s WHERE s.tbl = _require_synced.tbl) THEN
        RAISE EXCEPTION 'table % is not synced', tbl USING ERRCODE = 'FY011',
            HINT = 'Call ferry.enable_sync first.';
    END IF;
END $$;

CREATE FUNCTION ferry.add_rule(tbl regclass, name text, read_predicate text, write_predicate text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ferry._require_synced(tbl);
    IF read_predicate IS NULL THEN
        RAISE EXCEPTION 'rule "%" needs a read predicate', name USING ERRCODE = '22004',
            HINT = 'Use ''false'' for a rule that grants no reads.';
    END IF;
    -- ferry._check_rule validates both predicates.
    INSERT INTO ferry.rules AS r (tbl, name, read_predicate, write_predicate)
    VALUES (tbl, name, read_predicate, write_predicate)
    ON CONFLICT ON CONSTRAINT rules_pkey DO UPDATE
       SET read_predicate = excluded.read_predicate, write_predicate = excluded.write_predicate;
END $$;

-- ferry._check_rule validates every predicate that enters ferry.rules, however it
-- gets there: they are pasted into SQL, so nothing unchecked may be stored.
CREATE FUNCTION ferry._check_rule() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ferry._validate_predicate(NEW.tbl, NEW.read_predicate);
    IF NEW.write_predicate IS NOT NULL THEN
        PERFORM ferry._validate_predicate(NEW.tbl, NEW.write_predicate);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER check_rule BEFORE INSERT OR UPDATE ON ferry.rules
    FOR EACH ROW EXECUTE FUNCTION ferry._check_rule();

CREATE FUNCTION ferry.drop_rule(tbl regclass, name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ferry.rules r WHERE r.tbl = drop_rule.tbl AND r.name = drop_rule.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % has no rule "%"', tbl, name USING ERRCODE = 'FY021';
    END IF;
END $$;

-- ----------------------------------------------------------------
-- Conflict rules
-- ----------------------------------------------------------------

CREATE FUNCTION ferry.set_conflict_rule(tbl regclass, col name, rule text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s       ferry.synced_tables%ROWTYPE;
    att     pg_attribute%ROWTYPE;
    typ     pg_type%ROWTYPE;
BEGIN
    IF rule IS NULL OR rule NOT IN ('lww', 'version', 'manual', 'set_union', 'counter', 'immutable') THEN
        RAISE EXCEPTION 'unknown conflict rule "%"', rule USING ERRCODE = 'FY030',
            HINT = 'Use one of lww, version, manual, set_union, counter, immutable.';
    END IF;
    SELECT * INTO s FROM ferry.synced_tables t WHERE t.tbl = set_conflict_rule.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not synced', tbl USING ERRCODE = 'FY011';
    END IF;
    SELECT * INTO att FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of % does not exist', col, tbl USING ERRCODE = '42703';
    END IF;
    IF col = s.tenant_column OR col = ANY (s.key_columns) OR col LIKE 'ferry\_%' THEN
        RAISE EXCEPTION 'column "%" of % cannot have a conflict rule', col, tbl USING ERRCODE = 'FY030',
            DETAIL = 'Key, tenant and ferry_ columns never change after insert.';
    END IF;
    SELECT * INTO typ FROM pg_type WHERE oid = att.atttypid;
    IF rule = 'set_union' AND typ.typcategory <> 'A' THEN
        RAISE EXCEPTION 'set_union needs an array column; "%" is %', col, format_type(att.atttypid, att.atttypmod)
            USING ERRCODE = 'FY030';
    END IF;
    IF rule = 'counter' AND att.atttypid NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype,
                                                 'numeric'::regtype, 'float4'::regtype, 'float8'::regtype) THEN
        RAISE EXCEPTION 'counter needs a numeric column; "%" is %', col, format_type(att.atttypid, att.atttypmod)
            USING ERRCODE = 'FY030';
    END IF;
    INSERT INTO ferry.conflict_rules AS c (tbl, col, rule) VALUES (tbl, col, rule)
    ON CONFLICT ON CONSTRAINT conflict_rules_pkey DO UPDATE SET rule = excluded.rule;
END $$;

-- ----------------------------------------------------------------
-- Idempotency
-- ----------------------------------------------------------------

CREATE FUNCTION ferry.purge_mutations(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM ferry.mutations
     WHERE applied_at < now() - coalesce(older_than, current_setting('ferry.idempotency_ttl')::interval);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- ----------------------------------------------------------------
-- Schema versions
-- ----------------------------------------------------------------

CREATE FUNCTION ferry.schema_version() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT schema_version FROM ferry.state $$;

CREATE FUNCTION ferry.min_client_schema_version() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT min_client_schema_version FROM ferry.state $$;

CREATE FUNCTION ferry.set_min_client_schema_version(v bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF v IS NULL OR v < 1 OR v > ferry.schema_version() THEN
        RAISE EXCEPTION 'minimum client schema version % is out of range', v USING ERRCODE = '22023',
            DETAIL = format('It must be between 1 and the current schema version, %s.', ferry.schema_version());
    END IF;
    UPDATE ferry.state SET min_client_schema_version = v;
END $$;

-- ferry._on_ddl_end checks every DDL command on a synced table: it refuses what
-- would break offline clients and bumps the schema version when columns change.
CREATE FUNCTION ferry._on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    cmd     record;
    s       ferry.synced_tables%ROWTYPE;
    cols    record;
    keys    name[];
    r       record;
    bad     text;
BEGIN
    FOR cmd IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands()
                WHERE classid = 'pg_class'::regclass
    LOOP
        SELECT * INTO s FROM ferry.synced_tables WHERE tbl = cmd.objid;
        CONTINUE WHEN NOT FOUND;

        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = s.tbl AND a.attname = s.tenant_column
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'cannot drop or rename tenant column "%" of synced table %', s.tenant_column, s.tbl
                USING ERRCODE = 'FY040',
                      DETAIL = 'Offline clients address rows by tenant and key.',
                      HINT = 'Call ferry.disable_sync first, or keep the column.';
        END IF;
        keys := ferry._key_columns(s.tbl);
        IF keys IS DISTINCT FROM s.key_columns THEN
            RAISE EXCEPTION 'cannot change the primary key of synced table % (was %)', s.tbl, s.key_columns
                USING ERRCODE = 'FY040',
                      DETAIL = 'Offline clients address rows by their key; queued writes would miss.',
                      HINT = 'Keep the key columns; add new columns instead, or call ferry.disable_sync first.';
        END IF;
        SELECT string_agg(quote_ident(a.attname), ', ') INTO bad
          FROM pg_attribute a
         WHERE a.attrelid = s.tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname NOT LIKE 'ferry\_%' AND NOT (a.attname = ANY (s.columns))
           AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '';
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'cannot add NOT NULL column % without a default to synced table %', bad, s.tbl
                USING ERRCODE = 'FY040',
                      DETAIL = 'Offline clients with an older schema insert rows without it.',
                      HINT = 'Give the column a DEFAULT, or add it nullable.';
        END IF;
        FOR r IN SELECT * FROM ferry.rules WHERE tbl = s.tbl LOOP
            BEGIN
                PERFORM ferry._validate_predicate(s.tbl, r.read_predicate);
                IF r.write_predicate IS NOT NULL THEN
                    PERFORM ferry._validate_predicate(s.tbl, r.write_predicate);
                END IF;
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'this change to % breaks rule "%": %', s.tbl, r.name, SQLERRM
                    USING ERRCODE = 'FY040', HINT = 'Drop or change the rule first (ferry.add_rule replaces it).';
            END;
        END LOOP;

        SELECT * INTO cols FROM ferry._columns(s.tbl);
        IF cols.columns IS DISTINCT FROM s.columns OR cols.column_types IS DISTINCT FROM s.column_types THEN
            UPDATE ferry.synced_tables SET columns = cols.columns, column_types = cols.column_types
             WHERE tbl = s.tbl;
            DELETE FROM ferry.conflict_rules c WHERE c.tbl = s.tbl AND NOT (c.col = ANY (cols.columns));
            UPDATE ferry.state SET schema_version = schema_version + 1;
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION ferry._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                 JOIN ferry.synced_tables s ON s.tbl::oid = d.objid
                WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0) THEN
        DELETE FROM ferry.synced_tables s USING pg_event_trigger_dropped_objects() d
         WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND s.tbl::oid = d.objid;
        UPDATE ferry.state SET schema_version = schema_version + 1;
    END IF;
END $$;

CREATE FUNCTION ferry._on_ddl_start() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'ferry_on_ddl_start' LANGUAGE C;

CREATE EVENT TRIGGER ferry_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION ferry._on_ddl_start();
CREATE EVENT TRIGGER ferry_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION ferry._on_ddl_end();
CREATE EVENT TRIGGER ferry_sql_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION ferry._on_sql_drop();

-- ----------------------------------------------------------------
-- Exact deltas
-- ----------------------------------------------------------------

CREATE FUNCTION ferry.snapshot_cursor() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT pg_current_snapshot()::text $$;
