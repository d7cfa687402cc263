package gateway

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestOutboxPause: a pause lasts the delay when nothing much arrives, and
// ends at once when the queue fills to half its limit or the outbox
// closes, on the fake clock of a synctest bubble.
func TestOutboxPause(t *testing.T) {
	const d = 20 * time.Millisecond
	pause := func(o *outbox, during func()) time.Duration {
		start := time.Now()
		done := make(chan struct{})
		go func() { o.pause(d); close(done) }()
		synctest.Wait() // the writer is waiting out its delay
		during()
		<-done
		return time.Since(start)
	}
	synctest.Test(t, func(t *testing.T) {
		o := &outbox{limit: 8}
		o.hold()
		if got := pause(o, func() { o.push([]byte("a"), false) }); got != d {
			t.Errorf("a pause with one frame queued lasted %v, want %v", got, d)
		}
		o.take()
		if got := pause(o, func() {
			for range 4 {
				o.push([]byte("b"), false)
			}
		}); got != 0 {
			t.Errorf("a pause whose queue filled to half lasted %v, want 0", got)
		}
		o.take()
		if got := pause(o, func() { o.close() }); got != 0 {
			t.Errorf("a pause of a closing outbox lasted %v, want 0", got)
		}
		if _, pauses := o.stats(); pauses != 3 {
			t.Errorf("%d pauses counted, want 3", pauses)
		}
	})
}

// TestOutboxOverflow: a full queue refuses the frame and says so; replies
// are counted apart from other frames; the role passes to whoever pushes
// first onto an idle outbox.
func TestOutboxOverflow(t *testing.T) {
	o := &outbox{limit: 3}
	if start, full := o.push([]byte("1"), false); !start || full {
		t.Fatalf("first push: start %v full %v, want start", start, full)
	}
	if start, _ := o.push([]byte("2"), true); start {
		t.Fatal("second push took the role that the first holds")
	}
	o.push([]byte("3"), false)
	if _, full := o.push([]byte("4"), false); !full {
		t.Fatal("a fourth frame fit a queue of three")
	}
	batch, others, closing := o.take()
	if len(batch) != 3 || others != 2 || closing {
		t.Fatalf("take: %d frames, %d not replies, closing %v; want 3, 2, false", len(batch), others, closing)
	}
	o.recycle(batch)
	if batch, _, _ := o.take(); len(batch) != 0 {
		t.Fatal("an empty take returned frames")
	}
	if start, _ := o.push([]byte("5"), false); !start {
		t.Fatal("a push onto an outbox whose writer gave up the role did not take it")
	}
}
