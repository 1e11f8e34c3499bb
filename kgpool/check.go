package kgpool

import (
	"context"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/supervisor"
)

// Checked is what Check found and did.
type Checked struct {
	Report HealthReport
	// Unhealthy is the number of this host's workers found unhealthy;
	// Restarted, the units restarted for them.
	Unhealthy int
	Restarted []string
	// ReportsErr is why the workers' reports could not be read; their
	// counters, and other hosts' workers, are then left out of Report.
	ReportsErr error
}

// Check is `workers health`: the pool's unit health, the workers' reports
// (read by reports) and the KG service's health, with the workers found
// unhealthy restarted first when restart is set. This host's health does
// not depend on the database: reports failing is said in ReportsErr, not
// returned. When a restart fails, what was found so far comes with the
// error.
func Check(ctx context.Context, p *supervisor.Pool, reports func(context.Context) ([]kgdb.Report, error), restart bool) (*Checked, error) {
	h, err := p.Health(ctx)
	if err != nil {
		return nil, err
	}
	c := &Checked{Unhealthy: h.UnhealthyWorkers}
	var rs []kgdb.Report
	rs, c.ReportsErr = reports(ctx)
	kg := p.Config.KG
	service := CheckService(ctx, kg)
	if restart && h.UnhealthyWorkers > 0 {
		if c.Restarted, err = p.RestartUnhealthy(ctx, h); err != nil {
			return c, err
		}
	}
	c.Report = Health(h, rs, kg.DBURL != "", service, supervisor.Hostname(), time.Now())
	return c, nil
}
