-- `replay --into <schema>` drops and rebuilds tables only in a schema it made and marked (this
-- comment). The scratch schemas earlier versions made under their fixed names are marked here
-- so they stay usable; any other schema is refused.
DO
$$
    DECLARE
        scratch text;
    BEGIN
        FOREACH scratch IN ARRAY ARRAY ['audit_verify', 'bench_replay']
            LOOP
                IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = scratch) THEN
                    EXECUTE format('COMMENT ON SCHEMA %I IS %L', scratch,
                                   'payledger replay scratch schema: its tables are dropped and rebuilt');
                END IF;
            END LOOP;
    END
$$;
