package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/imgate/imgate/storage"
)

// Tokens (PROTOCOL §1.1, §1.5). A row of tokens binds a connection token to
// a user, on a terminal, until it expires. Each (uid, terminal) keeps its
// MaxTokensPerTerminal unexpired tokens bound last (the bound column, drawn
// from a sequence at every binding: the order of storage/pebble's token
// lists); binding one more deletes the older ones, so they no longer log in
// (connections already open with them stay). Logout (RevokeTokens) deletes
// the tokens of one terminal or of all of them. Expired rows are deleted by
// SweepTokens, which the router repeats in the background; until then they
// are refused with ErrTokenExpired.
//
// A PostgreSQL store holds no tokens of the first format (storage.TokenInfo
// Legacy): TokenInfo never reports Legacy nor ErrTokenRevoked.
//
// Every read-then-write of a user's tokens holds the lock of the user's row
// (user.go), and a binding the lock of its token's row too, so a (uid,
// terminal) never keeps more than MaxTokensPerTerminal tokens, and a token
// is never deleted after another user rebound it: Register and
// RevokeTokens delete only rows of their own user, SweepTokens only rows
// still expired.

// SQL of the tokens table.
const (
	sqlLockToken = `SELECT uid, expire FROM tokens WHERE token = $1 FOR UPDATE`
	// sqlBindToken binds $1; the WHERE refuses a token of another user that
	// has not expired at $6: one bound since the caller found it free.
	sqlBindToken = `INSERT INTO tokens (token, uid, terminal, issued, expire) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (token) DO UPDATE SET uid = EXCLUDED.uid, terminal = EXCLUDED.terminal,
			issued = EXCLUDED.issued, expire = EXCLUDED.expire, bound = nextval('tokens_bound')
		WHERE tokens.uid = EXCLUDED.uid OR tokens.expire <= $6`
	// sqlPruneTokens deletes the unexpired tokens of ($1, $2) but $3 beyond
	// the $5 bound last.
	sqlPruneTokens = `DELETE FROM tokens WHERE uid = $1 AND terminal = $2 AND expire > $4 AND token IN (
		SELECT token FROM tokens WHERE uid = $1 AND terminal = $2 AND expire > $4 AND token <> $3
		ORDER BY bound DESC OFFSET $5)`
	// sqlTokenInfo is the token lookup of every login.
	sqlTokenInfo = `SELECT t.terminal, t.issued, t.expire, u.uid, u.id, u.type, u.nick, u.avatar, u.terminal, u.sign, u.created, u.updated
		FROM tokens t LEFT JOIN users u ON u.uid = t.uid WHERE t.token = $1`
	sqlRevokeTerminal = `DELETE FROM tokens WHERE uid = $1 AND terminal = $2 RETURNING expire`
	sqlRevokeAll      = `DELETE FROM tokens WHERE uid = $1 RETURNING expire`
	// sqlSweepTokens deletes at most $2 tokens expired at $1, the longest
	// expired first, skipping rows another transaction holds (a concurrent
	// sweep of another node, a registration rebinding them). The outer
	// condition is checked again on a row updated since the inner read.
	// The tokens are picked as an array, not a join, so that the delete
	// finds them by the primary key whatever share of the table expired.
	sqlSweepTokens = `DELETE FROM tokens WHERE expire <= $1 AND token = ANY (ARRAY(
		SELECT token FROM tokens WHERE expire <= $1 ORDER BY expire LIMIT $2 FOR UPDATE SKIP LOCKED))`
)

// bindToken binds r.Token to uid on r.User.Terminal inside Register's
// transaction, which holds the locks of the user's row and of the token's,
// if they exist, and found the token free for uid; a token another
// registration bound since fails with ErrTokenTaken. listed says that uid may hold
// other tokens (it is not a new user): those beyond the newest
// MaxTokensPerTerminal-1 of the terminal are deleted.
func bindToken(ctx context.Context, tx pgx.Tx, uid uint64, r storage.Registration, listed bool) error {
	b := &pgx.Batch{}
	bind := b.Queue(sqlBindToken, r.Token, int64(uid), r.User.Terminal, r.Now, r.TokenExpire, r.Now)
	var bound int64
	bind.Exec(func(ct pgconn.CommandTag) error {
		bound = ct.RowsAffected()
		return nil
	})
	if listed {
		b.Queue(sqlPruneTokens, int64(uid), r.User.Terminal, r.Token, r.Now, storage.MaxTokensPerTerminal-1)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if bound != 1 {
		return storage.ErrTokenTaken
	}
	return nil
}

// TokenInfo returns what token is bound to. A token that expired at or
// before now fails with ErrTokenExpired, an unknown or revoked one with
// ErrNotFound.
func (db *DB) TokenInfo(token string, now int64) (storage.TokenInfo, error) {
	if token == "" {
		return storage.TokenInfo{}, storage.ErrNotFound
	}
	if db.closed.Load() {
		return storage.TokenInfo{}, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	var info storage.TokenInfo
	var uid *int64
	var id, nick, avatar, terminal, sign *string
	var typ *int16
	var created, updated *int64
	err := db.pool.QueryRow(ctx, sqlTokenInfo, token).Scan(&info.Terminal, &info.IssuedAt, &info.ExpireAt,
		&uid, &id, &typ, &nick, &avatar, &terminal, &sign, &created, &updated)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return storage.TokenInfo{}, storage.ErrNotFound
	case err != nil:
		return storage.TokenInfo{}, fmt.Errorf("postgres: token: %w", err)
	case info.ExpireAt <= now:
		return storage.TokenInfo{}, storage.ErrTokenExpired
	case uid == nil:
		return storage.TokenInfo{}, storage.ErrNotFound // users are never deleted
	}
	info.User = storage.User{UID: uint64(*uid), ID: *id, Type: int(*typ), Nick: *nick, Avatar: *avatar,
		Terminal: *terminal, Sign: *sign, Created: *created, Updated: *updated}
	return info, nil
}

// TokenUser returns the user a token is bound to; see TokenInfo.
func (db *DB) TokenUser(token string, now int64) (storage.User, error) {
	info, err := db.TokenInfo(token, now)
	return info.User, err
}

// RevokeTokens logs user id out (PROTOCOL §1.5): it deletes the tokens of
// terminal, or of every terminal when terminal is "". It returns the user
// and how many unexpired tokens it deleted. An unknown user fails with
// ErrNotFound.
func (db *DB) RevokeTokens(id, terminal string, now int64) (storage.User, int, error) {
	var u storage.User
	var n int
	err := db.syncTx(func(ctx context.Context, tx pgx.Tx) error {
		n = 0
		var err error
		if u, err = scanUser(tx.QueryRow(ctx, sqlLockUser, id)); err != nil {
			return notFound(err)
		}
		var rows pgx.Rows
		if terminal != "" {
			rows, err = tx.Query(ctx, sqlRevokeTerminal, int64(u.UID), terminal)
		} else {
			rows, err = tx.Query(ctx, sqlRevokeAll, int64(u.UID))
		}
		if err != nil {
			return err
		}
		var expire int64
		_, err = pgx.ForEachRow(rows, []any{&expire}, func() error {
			if expire > now {
				n++
			}
			return nil
		})
		return err
	})
	switch {
	case err == nil:
		return u, n, nil
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrClosed):
		return storage.User{}, 0, err
	}
	return storage.User{}, 0, fmt.Errorf("postgres: revoke tokens of %s: %w", id, err)
}

// SweepTokens deletes at most max tokens that expired at or before now,
// the longest expired first, and returns how many it deleted. Nodes may
// sweep at once: each skips the rows another holds.
func (db *DB) SweepTokens(now int64, max int) (purged int, err error) {
	if max <= 0 {
		return 0, nil
	}
	if db.closed.Load() {
		return 0, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	// synchronous_commit stays on: a purge lost in a crash would be done
	// again, but the sweep is one commit per pass, not worth a session
	// setting of its own.
	ct, err := db.pool.Exec(ctx, sqlSweepTokens, now, max)
	if err != nil {
		return 0, fmt.Errorf("postgres: sweep tokens: %w", err)
	}
	return int(ct.RowsAffected()), nil
}
