-- A refresh token spent by a refresh names the refresh token that refresh
-- issued (its signature; '': none), so that a retry of a refresh whose
-- answer was lost can be told from a reuse (IDP_REFRESH_TOKEN_GRACE). Keep
-- it in step with ../postgres/0012_token_successor.sql.
ALTER TABLE tokens ADD COLUMN successor TEXT NOT NULL DEFAULT '';
