package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
)

// BenchmarkResync measures one resync of a node after an outage, on a real
// Redis, for a node holding users sessions (one each, each user a member
// of one channel), against "per-user": reading each user's memberships
// with its own round trip, as the resync did before it read in batches
// (which, counting nodes too, would have taken a round trip more per user).
//
//	go test -run '^$' -bench Resync -benchtime 20x ./gateway
func BenchmarkResync(b *testing.B) {
	for _, users := range []int{100, 2000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			s, reg, uids := newBenchResyncServer(b, users)
			if !s.re.resync(b.Context(), 0) { // warm up: subscriptions, connections
				b.Fatal("resync failed")
			}
			b.Run("resync", func(b *testing.B) {
				for b.Loop() {
					if !s.re.resync(b.Context(), 0) {
						b.Fatal("resync failed")
					}
				}
			})
			b.Run("per-user", func(b *testing.B) {
				for b.Loop() {
					for _, uid := range uids {
						if _, _, err := reg.Memberships(b.Context(), uid); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}

func newBenchResyncServer(b *testing.B, users int) (*Server, pubsub.Registry, []string) {
	url, prefix := redistest.URL(b)
	opts, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	pubsub.TuneOptions(opts, 0)
	client := redis.NewClient(opts)
	b.Cleanup(func() { client.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var reg pubsub.Registry
	s, err := New(context.Background(), Config{}, Deps{Connect: func(h pubsub.Handler) (pubsub.Backend, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := pubsub.NewRedis(ctx, pubsub.RedisOptions{Client: client, Prefix: prefix, NodeID: "bench", Handler: h, Logger: log})
		if err != nil {
			return nil, err
		}
		reg = r
		return r, nil
	}}, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Shutdown(context.Background()) })
	ctx := b.Context()
	uids := make([]string, users)
	for i := range uids {
		uids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		channel := fmt.Sprintf("#c%d", i%100)
		if i < 100 {
			if err := reg.CreateChannel(ctx, channel, uids[i], pubsub.Notice{}); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := reg.Join(ctx, channel, pubsub.Peer{ID: uids[i], Username: "u" + uids[i][len(uids[i])-3:]}); err != nil {
			b.Fatal(err)
		}
		sess := newResyncSession(b, s, uids[i])
		s.router.add(userTopic(uids[i]), sess)
	}
	return s, reg, uids
}
