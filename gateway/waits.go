package gateway

import (
	"strconv"
	"sync"
)

// waits are the requests of this node that wait for signals from the
// cluster: the answers of other nodes to a join notice, or this node's own
// receipt of a notice it published (membership.go). Each wait has an id
// that is unique in the cluster, carried by the notice and by its answers.
type waits struct {
	prefix string // immutable: the node's reply topic, unique in the cluster

	mu    sync.Mutex
	byID  map[string]*wait // guarded by mu
	count uint64           // guarded by mu
}

// wait counts the signals one request waits for.
type wait struct {
	need int           // guarded by waits.mu
	done chan struct{} // closed when need signals came
}

func newWaits(prefix string) *waits {
	return &waits{prefix: prefix, byID: make(map[string]*wait)}
}

// add registers a wait for n signals (at least one). The caller must call
// release when done with it, signalled or not.
func (w *waits) add(n int) (id string, done <-chan struct{}, release func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count++
	id = w.prefix + "." + strconv.FormatUint(w.count, 10)
	wt := &wait{need: max(n, 1), done: make(chan struct{})}
	w.byID[id] = wt
	return id, wt.done, func() {
		w.mu.Lock()
		delete(w.byID, id)
		w.mu.Unlock()
	}
}

// signal counts one signal for wait id, if it is one of this node's.
func (w *waits) signal(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt := w.byID[id]
	if wt == nil || wt.need == 0 {
		return
	}
	if wt.need--; wt.need == 0 {
		close(wt.done)
	}
}
