-- The order tokens were bound in. A (uid, terminal) keeps its
-- MaxTokensPerTerminal most recently bound tokens, as storage/pebble's
-- lists do: issued is the registering node's clock, which ties within a
-- millisecond and may go back from one node to another, so it cannot tell
-- which binding came last. bound is drawn again when a token is rebound.
CREATE SEQUENCE tokens_bound;
ALTER TABLE tokens ADD COLUMN bound bigint NOT NULL DEFAULT nextval('tokens_bound');
DROP INDEX tokens_user;
CREATE INDEX tokens_user ON tokens (uid, terminal, bound);
