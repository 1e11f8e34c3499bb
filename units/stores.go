package units

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// GenerationC is today's KATO (3.x): one variable per setting as
// generation B, SERVICE_NAME naming the knowledge base, and sessions and
// knowledge in stores shared over the network (ClickHouse, Redis, Qdrant).
const GenerationC = "c"

// Stores are the shared stores of generation-C processors, one URL each; an
// empty URL leaves that store out. Credentials travel in the URLs' user
// information and reach the processor only through its environment file.
type Stores struct {
	// ClickHouseURL is http[s]://[USER[:PASSWORD]@]HOST[:PORT][/DB].
	ClickHouseURL string
	// RedisURL is redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/N], passed as it is.
	RedisURL string
	// QdrantURL is http[s]://[:API_KEY@]HOST[:PORT].
	QdrantURL string
}

// envVar is one assignment of an environment file.
type envVar struct{ key, value string }

// StoreRule returns the rule the URL of the store named store ("clickhouse",
// "redis" or "qdrant") breaks, or "" when it is valid or empty.
func StoreRule(store, raw string) string {
	_, rule := storeVariables(store, raw)
	return rule
}

// variables returns the variables generation C reads its stores from, in a
// fixed order: ClickHouse, Redis, Qdrant. REDIS_ENABLED says whether sessions
// go to Redis; without it they stay in each process's memory.
func (s Stores) variables() ([]envVar, error) {
	var out []envVar
	for _, st := range []struct{ name, url string }{{"clickhouse", s.ClickHouseURL}, {"redis", s.RedisURL}, {"qdrant", s.QdrantURL}} {
		vars, rule := storeVariables(st.name, st.url)
		if rule != "" {
			return nil, fmt.Errorf("invalid stores.%s_url %s: %s", st.name, redactedURL(st.url), rule)
		}
		out = append(out, vars...)
	}
	return out, nil
}

func storeVariables(store, raw string) ([]envVar, string) {
	if raw == "" {
		if store == "redis" {
			return []envVar{{"REDIS_ENABLED", "false"}}, ""
		}
		return nil, ""
	}
	if err := checkText(raw); err != nil {
		return nil, err.Error()
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, storeURLRule(store)
	}
	port := u.Port()
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || !ValidPort(n) {
			return nil, storeURLRule(store)
		}
	}
	password, _ := u.User.Password()
	switch store {
	case "clickhouse":
		secure := u.Scheme == "https"
		if u.Scheme != "http" && !secure {
			return nil, storeURLRule(store)
		}
		if port == "" {
			port = "8123"
			if secure {
				port = "8443"
			}
		}
		db := strings.TrimPrefix(u.Path, "/")
		if strings.Contains(db, "/") {
			return nil, storeURLRule(store)
		}
		vars := []envVar{{"CLICKHOUSE_HOST", u.Hostname()}, {"CLICKHOUSE_PORT", port}}
		if db != "" {
			vars = append(vars, envVar{"CLICKHOUSE_DB", db})
		}
		if u.User != nil {
			vars = append(vars, envVar{"CLICKHOUSE_USER", u.User.Username()}, envVar{"CLICKHOUSE_PASSWORD", password})
		}
		return append(vars, envVar{"CLICKHOUSE_SECURE", strconv.FormatBool(secure)}), ""
	case "redis":
		if u.Scheme != "redis" && u.Scheme != "rediss" {
			return nil, storeURLRule(store)
		}
		return []envVar{{"REDIS_URL", raw}, {"REDIS_ENABLED", "true"}, {"REDIS_TLS", strconv.FormatBool(u.Scheme == "rediss")}}, ""
	case "qdrant":
		https := u.Scheme == "https"
		if u.Scheme != "http" && !https || (u.Path != "" && u.Path != "/") {
			return nil, storeURLRule(store)
		}
		if port == "" {
			port = "6333"
		}
		vars := []envVar{{"QDRANT_HOST", u.Hostname()}, {"QDRANT_PORT", port}}
		if password != "" {
			vars = append(vars, envVar{"QDRANT_API_KEY", password})
		}
		return append(vars, envVar{"QDRANT_HTTPS", strconv.FormatBool(https)}), ""
	}
	return nil, "is not a store: must be clickhouse, redis or qdrant"
}

func storeURLRule(store string) string {
	switch store {
	case "clickhouse":
		return "must be http[s]://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE]"
	case "redis":
		return "must be redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]"
	}
	return "must be http[s]://[:API_KEY@]HOST[:PORT]"
}

// redactedURL is raw with its user information replaced by REDACTED, as
// config.RedactURL shows URLs, for messages.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}

// ServiceNameRule returns the rule name breaks as a generation-C
// SERVICE_NAME, or "": 1 to 64 letters, digits, '-' and '_', as an
// instance id, since it becomes part of the stores' keys.
func ServiceNameRule(name string) string {
	if InstanceIDRule(name) != "" {
		return "must be 1 to 64 letters, digits, '-' or '_'"
	}
	return ""
}
