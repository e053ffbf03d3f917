-- examples/demo.sql -- the demo schema of `make run`: a multi-tenant todo app synced by ferry.
--
-- Workspaces are the tenants: a client sees and writes only the todos of the
-- workspaces in its claims ("tenants"), and of those only its own todos and the
-- ones shared with the team. Safe to run again: it creates what is missing and
-- leaves existing rows alone.

CREATE EXTENSION IF NOT EXISTS ferry;

CREATE TABLE IF NOT EXISTS workspaces (
    id          text PRIMARY KEY,
    name        text NOT NULL
);

CREATE TABLE IF NOT EXISTS todos (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  text NOT NULL REFERENCES workspaces,
    title         text NOT NULL,
    done          boolean NOT NULL DEFAULT false,
    owner_id      text,
    visibility    text NOT NULL DEFAULT 'team',     -- 'team' or 'private'
    tags          text[] NOT NULL DEFAULT '{}',
    pomodoros     integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Sync todos, one tenant per workspace (does nothing when already enabled).
SELECT ferry.enable_sync('todos', 'workspace_id');

-- How concurrent edits of one column merge.
SELECT ferry.set_conflict_rule('todos', 'tags', 'set_union');     -- both devices' tag edits survive
SELECT ferry.set_conflict_rule('todos', 'pomodoros', 'counter');  -- increments add up
SELECT ferry.set_conflict_rule('todos', 'created_at', 'immutable');
SELECT ferry.set_conflict_rule('todos', 'done', 'lww');           -- the newest write wins

-- Who sees what inside a workspace: your own todos and the team's.
SELECT ferry.add_rule('todos', 'owner_or_team',
                      $$owner_id = ferry.claim('sub') OR visibility = 'team'$$);

INSERT INTO workspaces (id, name) VALUES
    ('acme',   'Acme Corp'),
    ('globex', 'Globex')
ON CONFLICT DO NOTHING;

INSERT INTO todos (id, workspace_id, title, done, owner_id, visibility, tags, pomodoros) VALUES
    ('00000000-0000-4000-8000-000000000001', 'acme',   'Write the launch post',  false, 'alice', 'team',    '{writing}',         2),
    ('00000000-0000-4000-8000-000000000002', 'acme',   'Fix the login bug',      true,  'bob',   'team',    '{bug,urgent}',      4),
    ('00000000-0000-4000-8000-000000000003', 'acme',   'Book a dentist',         false, 'alice', 'private', '{personal}',        0),
    ('00000000-0000-4000-8000-000000000004', 'globex', 'Quarterly report',       false, 'carol', 'team',    '{finance}',         1),
    ('00000000-0000-4000-8000-000000000005', 'globex', 'Order new laptops',      false, 'dave',  'private', '{}',                0)
ON CONFLICT DO NOTHING;
