package wfengine

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
)

// Benchmarks (not run by scripts/test.sh):
//
//	go test -run '^$' -bench . -benchtime 20000x
func benchEngine(b *testing.B) *Engine {
	e, err := Open(filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	return e
}

func BenchmarkEnqueueSync(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Enqueue(ctx, `{"effect":"noop"}`); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnqueueAsync(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(b.N)
	done := func(string, error) { wg.Done() }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.EnqueueAsync(ctx, `{"effect":"noop"}`, done); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}

// End to end: b.N no-op jobs enqueued (async) and completed by a Go callback,
// until the outcomes are durable.
func BenchmarkEndToEnd(b *testing.B) {
	e := benchEngine(b)
	var wg sync.WaitGroup
	wg.Add(b.N)
	_ = e.RegisterEffect("noop", map[string]any{"concurrency": 1024}, func(j *Job) {
		_ = j.Complete(nil)
		wg.Done()
	})
	_ = e.Start()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.EnqueueAsync(ctx, `{"effect":"noop"}`, nil); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	if err := e.Sync(ctx); err != nil {
		b.Fatal(err)
	}
}
