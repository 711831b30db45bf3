package wfengine

import (
	"context"
	"encoding/json"
	"time"
)

type settleStats struct {
	Outbox struct {
		ByEffect map[string]struct {
			Ready int64 `json:"ready"`
		} `json:"by_effect"`
	} `json:"outbox"`
	Schedules struct {
		Due int64 `json:"due"`
	} `json:"schedules"`
	Events struct {
		Pending int64 `json:"pending"`
	} `json:"events"`
	Engine struct {
		Inflight int64 `json:"inflight"`
	} `json:"engine"`
}

// Settle (a test helper) runs the engine until nothing is ready or due at
// the engine's current (virtual) time: no ready job of a registered effect,
// nothing in flight, no due schedule, no pending saga delivery. It wakes the
// relay and uses Sync as the barrier before each look at the stats; between
// looks it yields briefly. Jobs completed from goroutines count once they
// are completed. It returns ctx.Err() if ctx ends first.
func (e *Engine) Settle(ctx context.Context) error {
	quiet := 0
	for {
		if err := e.Wake(); err != nil {
			return err
		}
		if err := e.Sync(ctx); err != nil {
			return err
		}
		raw, err := e.Stats(nil)
		if err != nil {
			return err
		}
		var s settleStats
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		busy := s.Engine.Inflight > 0 || s.Schedules.Due > 0 || s.Events.Pending > 0
		e.mu.Lock()
		for name := range e.effects {
			if s.Outbox.ByEffect[name].Ready > 0 {
				busy = true
			}
		}
		e.mu.Unlock()
		if busy {
			quiet = 0
		} else if quiet++; quiet >= 2 { // quiet across two barriers in a row
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
