package config

import (
	"strconv"

	"github.com/kato-manager/kato-manager/units"
)

// Stores are the [stores] of kato.toml: the ClickHouse, Redis and Qdrant
// that every generation-C processor shares, as URLs. Their credentials are
// part of the URLs; they reach each instance through its environment file,
// which only root and systemd read, never through kato.toml or argv.
type Stores struct {
	// ClickHouse is http[s]://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE].
	ClickHouse string `toml:"clickhouse_url"`
	// Redis is redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Without it a
	// generation-C process keeps sessions in its own memory, where no other
	// worker or replica sees them.
	Redis string `toml:"redis_url"`
	// Qdrant is http[s]://[:API_KEY@]HOST[:PORT].
	Qdrant string `toml:"qdrant_url"`
}

// Units returns the stores as units renders them.
func (s Stores) Units() units.Stores {
	return units.Stores{ClickHouseURL: s.ClickHouse, RedisURL: s.Redis, QdrantURL: s.Qdrant}
}

// validate reports a store URL that does not parse, its password redacted
// in the message.
func (s Stores) validate() error {
	for _, st := range []struct{ name, url string }{{"clickhouse", s.ClickHouse}, {"redis", s.Redis}, {"qdrant", s.Qdrant}} {
		if rule := units.StoreRule(st.name, st.url); rule != "" {
			return &FieldError{Field: "stores." + st.name + "_url", Value: RedactURL(st.url), Rule: rule}
		}
	}
	return nil
}

// maxWorkers bounds a generation-C processor's uvicorn workers.
const maxWorkers = 64

// validateGenerationC checks the keys only generation C has: workers and
// service_name there, neither elsewhere. Generation C reaches its stores
// over the host's network, so it runs on the host network.
func (p Processor) validateGenerationC(prefix string) error {
	if p.Generation != units.GenerationC {
		if p.Workers != 0 {
			return &FieldError{Field: prefix + "workers", Value: strconv.Itoa(p.Workers), Rule: "must not be set for a generation-" + p.Generation + " processor; only generation c runs uvicorn workers"}
		}
		if p.ServiceName != "" {
			return &FieldError{Field: prefix + "service_name", Value: p.ServiceName, Rule: "must not be set for a generation-" + p.Generation + " processor; only generation c reads SERVICE_NAME"}
		}
		return nil
	}
	if err := intBetween(prefix+"workers", p.Workers, 1, maxWorkers); err != nil {
		return err
	}
	if p.ServiceName != "" {
		if rule := units.ServiceNameRule(p.ServiceName); rule != "" {
			return &FieldError{Field: prefix + "service_name", Value: p.ServiceName, Rule: rule}
		}
	}
	if p.Network == NetworkPrivate {
		return &FieldError{Field: prefix + "network", Value: p.Network, Rule: "must be host for a generation-c processor, which reaches its shared stores over the host's network"}
	}
	return nil
}

// ServiceNameOf returns the SERVICE_NAME of a generation-C instance: the
// processor's service_name, else the instance's group, else its id. Replicas
// in one group so share one knowledge base.
func (p Processor) ServiceNameOf(inst Instance) string {
	switch {
	case p.ServiceName != "":
		return p.ServiceName
	case inst.Group != "":
		return inst.Group
	}
	return inst.ID
}
