package chatclient

import (
	"context"
	"sync"
)

// updates carries Updates from the client's goroutines to the caller's
// channel. Pushing never blocks: the connection's reader must go on reading
// (acks, the server's pings) whatever the caller does, or a caller that
// sends from the loop that reads Updates would wait for an ack that the
// blocked reader never reads. What the caller has not taken yet waits in
// memory.
type updates struct {
	out chan Update // the caller's; closed by pump

	mu       sync.Mutex
	items    []Update      // guarded by mu
	finished bool          // guarded by mu: nothing more will be pushed
	wake     chan struct{} // capacity 1: items or finished changed
}

func newUpdates() *updates {
	return &updates{out: make(chan Update), wake: make(chan struct{}, 1)}
}

func (q *updates) push(u Update) {
	q.mu.Lock()
	if !q.finished {
		q.items = append(q.items, u)
	}
	q.mu.Unlock()
	q.signal()
}

// finish says that nothing more comes: pump closes the channel once the
// caller has taken what is queued.
func (q *updates) finish() {
	q.mu.Lock()
	q.finished = true
	q.mu.Unlock()
	q.signal()
}

func (q *updates) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pump hands the queued updates to the caller, in order, until finish
// and the queue is empty, or ctx ends (Close: what is left is dropped).
// It closes the caller's channel when it returns.
func (q *updates) pump(ctx context.Context) {
	defer close(q.out)
	for {
		q.mu.Lock()
		items, finished := q.items, q.finished
		q.items = nil
		q.mu.Unlock()
		for _, u := range items {
			select {
			case q.out <- u:
			case <-ctx.Done():
				return
			}
		}
		if len(items) > 0 {
			continue
		}
		if finished {
			return
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return
		}
	}
}
