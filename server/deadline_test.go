package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestCapDeadline(t *testing.T) {
	t.Run("a deadline within the cap is kept", func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ctx := capDeadline(parent, time.Minute)
		defer releaseDeadline(ctx)
		if ctx != parent {
			t.Fatal("capDeadline wrapped a context whose deadline was already within the cap")
		}
	})
	t.Run("the deadline fires without Done asked for first", func(t *testing.T) {
		parent := context.WithValue(context.Background(), ctxKey{}, "v")
		ctx := capDeadline(parent, 20*time.Millisecond)
		defer releaseDeadline(ctx)
		d, ok := ctx.Deadline()
		if !ok || time.Until(d) > 20*time.Millisecond || time.Until(d) < 0 {
			t.Fatalf("Deadline() = %v, %v; want about 20ms from now", d, ok)
		}
		if ctx.Value(ctxKey{}) != "v" {
			t.Fatal("the parent's value is lost")
		}
		if err := ctx.Err(); err != nil {
			t.Fatalf("Err() before the deadline = %v", err)
		}
		time.Sleep(30 * time.Millisecond)
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err() after the deadline = %v, want DeadlineExceeded", err)
		}
		if !closed(ctx.Done()) {
			t.Fatal("Err() is not nil but Done() is open")
		}
		if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Cause() = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("Done closes at the deadline, and derived contexts follow", func(t *testing.T) {
		ctx := capDeadline(context.Background(), 20*time.Millisecond)
		defer releaseDeadline(ctx)
		child, cancel := context.WithCancel(ctx)
		defer cancel()
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a context derived from the capped one was not done 5s after a 20ms deadline")
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err() = %v, child %v; want DeadlineExceeded", ctx.Err(), child.Err())
		}
	})
	t.Run("the parent's cancellation passes through", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx := capDeadline(parent, time.Minute)
		defer releaseDeadline(ctx)
		cancel()
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err() after the parent was canceled = %v", err)
		}
		if !closed(ctx.Done()) {
			t.Fatal("Done() is open after the parent was canceled")
		}
	})
	t.Run("release cancels an armed context", func(t *testing.T) {
		ctx := capDeadline(context.Background(), time.Minute)
		done := ctx.Done()
		releaseDeadline(ctx)
		if !closed(done) {
			t.Fatal("Done() is open after releaseDeadline")
		}
		// Releasing a context never armed makes nothing.
		releaseDeadline(capDeadline(context.Background(), time.Minute))
	})
}

// closed tells whether a Done channel is closed, without waiting.
func closed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// BenchmarkDeadlineCap compares the deadline cap made with
// context.WithTimeout and with capDeadline, under a parent that has a
// later deadline and can be canceled, as gRPC's stream context is.
func BenchmarkDeadlineCap(b *testing.B) {
	parent, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.Run("WithTimeout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(parent, 5*time.Second)
			_ = ctx.Value(ctxKey{})
			cancel()
		}
	})
	b.Run("capDeadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx := capDeadline(parent, 5*time.Second)
			_ = ctx.Value(ctxKey{})
			releaseDeadline(ctx)
		}
	})
}
