package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// StateRedis is a StateStore in Redis, shared by every node of a cluster: a
// login started on one node can come back to another. Each pending login is
// one string key with a TTL; Take is a single GETDEL, so a state is used at
// most once however many nodes race for it.
type StateRedis struct {
	rdb    redis.Cmdable // immutable after NewStateRedis
	prefix string        // immutable after NewStateRedis
}

var _ StateStore = (*StateRedis)(nil)

// NewStateRedis returns a store on rdb (a *redis.Client or a cluster
// client; Redis 6.2 or later for GETDEL) whose keys are prefix +
// "oauth:state:" + key. The caller closes rdb.
func NewStateRedis(rdb redis.Cmdable, prefix string) *StateRedis {
	return &StateRedis{rdb: rdb, prefix: prefix + "oauth:state:"}
}

// Put implements StateStore.
func (s *StateRedis) Put(ctx context.Context, key string, st LoginState, ttl time.Duration) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("put login state: %w", err)
	}
	ok, err := s.rdb.SetNX(ctx, s.prefix+key, b, ttl).Result()
	if err != nil {
		return fmt.Errorf("put login state: %w: %w", ErrUnavailable, err)
	}
	if !ok {
		return errors.New("put login state: key already taken")
	}
	return nil
}

// Take implements StateStore.
func (s *StateRedis) Take(ctx context.Context, key string) (LoginState, error) {
	b, err := s.rdb.GetDel(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return LoginState{}, ErrNoState
	}
	if err != nil {
		return LoginState{}, fmt.Errorf("take login state: %w: %w", ErrUnavailable, err)
	}
	var st LoginState
	if err := json.Unmarshal(b, &st); err != nil {
		return LoginState{}, fmt.Errorf("take login state: %w", err)
	}
	return st, nil
}
