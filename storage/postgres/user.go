package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Users (PROTOCOL §1.1). A user's uid is drawn from the users table's
// identity at its first registration and never changes. Profiles are not
// cached: another node may update one at any time, and every read must see
// the update once it is acknowledged.
//
// Register runs in a transaction of its own on the pool, not on the
// committer: it is synchronous, and it must refuse a taken token having
// changed nothing. It locks the user's row (the UPDATE of an existing
// user; RevokeTokens locks it too) and the token's (FOR UPDATE) before it
// checks them, so registrations of one user, and bindings of one token,
// run one at a time across nodes. A user's first registration has no row
// to lock: two of them at once race on the unique id, and the loser runs
// again as a registration of an existing user (its INSERT drew a uid that
// stays unused; uids are dense but for such races).

// SQL of the users table.
const (
	sqlUpdateUser = `UPDATE users SET type = $2, nick = $3, avatar = $4, terminal = $5, sign = $6, updated = $7
		WHERE id = $1 RETURNING uid, created`
	sqlInsertUser = `INSERT INTO users (id, type, nick, avatar, terminal, sign, created, updated)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING RETURNING uid`
	userColumns = `uid, id, type, nick, avatar, terminal, sign, created, updated`
	sqlUserByID = `SELECT ` + userColumns + ` FROM users WHERE id = $1`
	// sqlLockUser is RevokeTokens' read of the user, which it holds until
	// it commits.
	sqlLockUser  = sqlUserByID + ` FOR UPDATE`
	sqlUserByUID = `SELECT ` + userColumns + ` FROM users WHERE uid = $1`
)

// errRaced: a statement met a concurrent writer it could not wait for;
// the transaction runs again.
var errRaced = errors.New("postgres: raced with another node")

// syncTx runs fn in a transaction of its own on the pool and commits it,
// running it again on a serialization failure, a deadlock or errRaced.
// The pool's synchronous_commit is on: the commit is durable when syncTx
// returns.
func (db *DB) syncTx(fn func(ctx context.Context, tx pgx.Tx) error) error {
	if db.closed.Load() {
		return storage.ErrClosed
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
		cancel()
		if err == nil || !(retryable(err) || errors.Is(err, errRaced)) || attempt == maxRetries {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
}

// Register upserts the user's profile and, if r.Token is set, binds it to
// the user on the profile's terminal, in one transaction (PROTOCOL §1.1).
// A token bound to another user and not yet expired fails with
// ErrTokenTaken and changes nothing. Binding a token to a (user, terminal)
// that already holds MaxTokensPerTerminal unexpired tokens deletes the
// ones bound longest ago beyond that (token.go). It returns the stored
// user. Errors: ErrTokenTaken, ErrClosed, or the server's.
func (db *DB) Register(r storage.Registration) (storage.User, error) {
	var u storage.User
	err := db.syncTx(func(ctx context.Context, tx pgx.Tx) (err error) {
		u, err = register(ctx, tx, r)
		return err
	})
	if err != nil {
		if errors.Is(err, storage.ErrTokenTaken) || errors.Is(err, storage.ErrClosed) {
			return storage.User{}, err
		}
		return storage.User{}, fmt.Errorf("postgres: register %s: %w", r.User.ID, err)
	}
	return u, nil
}

// register is Register inside tx.
func register(ctx context.Context, tx pgx.Tx, r storage.Registration) (storage.User, error) {
	u := r.User
	u.UID, u.Created, u.Updated = 0, 0, r.Now
	typ := int16(u.Type)
	// One round trip: the profile's update, which locks an existing user,
	// and the token's owner, locked.
	var prev, owner int64
	var created, expire int64
	var hasToken bool
	b := &pgx.Batch{}
	b.Queue(sqlUpdateUser, u.ID, typ, u.Nick, u.Avatar, u.Terminal, u.Sign, r.Now).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&prev, &created); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return nil
	})
	if r.Token != "" {
		b.Queue(sqlLockToken, r.Token).QueryRow(func(row pgx.Row) error {
			switch err := row.Scan(&owner, &expire); {
			case err == nil:
				hasToken = true
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			return nil
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return storage.User{}, err
	}
	if hasToken && (prev == 0 || owner != prev) && expire > r.Now {
		return storage.User{}, storage.ErrTokenTaken // rolled back: the update too
	}
	if prev != 0 {
		u.UID, u.Created = uint64(prev), created
	} else {
		var uid int64
		err := tx.QueryRow(ctx, sqlInsertUser, u.ID, typ, u.Nick, u.Avatar, u.Terminal, u.Sign, r.Now).Scan(&uid)
		if errors.Is(err, pgx.ErrNoRows) {
			return storage.User{}, errRaced // another node registered it first
		}
		if err != nil {
			return storage.User{}, err
		}
		u.UID, u.Created = uint64(uid), r.Now
	}
	if r.Token != "" {
		if err := bindToken(ctx, tx, u.UID, r, prev != 0); err != nil {
			return storage.User{}, err
		}
	}
	return u, nil
}

// UserByID returns the user with protocol id id, or ErrNotFound.
func (db *DB) UserByID(id string) (storage.User, error) {
	return db.queryUser(sqlUserByID, id)
}

// UserByUID returns the user with internal id uid, or ErrNotFound.
func (db *DB) UserByUID(uid uint64) (storage.User, error) {
	return db.queryUser(sqlUserByUID, int64(uid))
}

func (db *DB) queryUser(sql string, arg any) (storage.User, error) {
	if db.closed.Load() {
		return storage.User{}, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	u, err := scanUser(db.pool.QueryRow(ctx, sql, arg))
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return storage.User{}, storage.ErrNotFound
		}
		return storage.User{}, fmt.Errorf("postgres: user %v: %w", arg, err)
	}
	return u, nil
}

// scanUser scans the userColumns of a row.
func scanUser(row pgx.Row) (storage.User, error) {
	var u storage.User
	var uid int64
	var typ int16
	err := row.Scan(&uid, &u.ID, &typ, &u.Nick, &u.Avatar, &u.Terminal, &u.Sign, &u.Created, &u.Updated)
	u.UID, u.Type = uint64(uid), int(typ)
	return u, err
}
