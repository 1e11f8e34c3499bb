package supervisor

import (
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// NewStartRequest is the request to start the instance l describes, l
// being a start layered by config.Layer (the CLI's flags, the dashboard's
// form): its name, processor, network, group and parameters put into req,
// which holds the rest (id, ports, command, what was typed, timeout). The
// request is validated as a whole and its processor must be one of cfg.
func NewStartRequest(cfg *config.Config, l *config.Entry, req StartRequest) (StartRequest, error) {
	req.Name, req.Processor, req.Network, req.Group = l.Name, l.Processor, l.Network, l.Group
	req.Parameters = l.Parameters
	req.Weight = l.Weight
	if err := ValidateStart(req); err != nil {
		return StartRequest{}, err
	}
	if _, err := cfg.ProcessorNamed(req.Processor); err != nil {
		return StartRequest{}, err
	}
	return req, nil
}

// StartInput is a start as a person gives it on start's command line:
// the values, and which of them were given (Given, by the flag's name: id,
// name, port, zmq-port, processor, network, group, weight, template,
// timeout). A value given is taken as given, never as the default: an
// empty id or name, a zero port or a timeout that is not positive is an
// error.
type StartInput struct {
	ID, Name, Processor, Network, Group, Template string
	APIPort, ZMQPort, Weight                      int
	// Parameters are the processor settings given.
	Parameters config.Parameters
	Command    []string
	Timeout    time.Duration
	Given      map[string]bool
	// Explicit lists what was given as it was typed ("--max-predictions"),
	// for the notice of a start that finds its instance stopped.
	Explicit []string
}

// Check refuses what is wrong in the input by itself, before kato.toml is
// read; Request checks the whole.
func (in StartInput) Check() error {
	if in.Given["id"] {
		if err := config.ValidateID(in.ID); err != nil {
			return err
		}
	}
	if in.Given["name"] {
		if err := config.ValidateName(in.Name); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		field string
		value int
	}{{"port", in.APIPort}, {"zmq_port", in.ZMQPort}} {
		if in.Given[strings.ReplaceAll(p.field, "_", "-")] && p.value == 0 {
			return &config.FieldError{Field: p.field, Value: "0", Rule: units.PortRule}
		}
	}
	if in.Given["weight"] && (in.Weight < 1 || in.Weight > config.MaxWeight) {
		return &config.FieldError{Field: "--weight", Value: strconv.Itoa(in.Weight), Rule: config.WeightRule}
	}
	if in.Given["timeout"] {
		return config.PositiveDuration("timeout", in.Timeout)
	}
	return nil
}

// Request is the request the input makes with cfg: what was given over
// the settings of its template (kato.toml's [templates.NAME], when one is
// given) over [defaults], layered by config.Layer as a fleet file's entry
// is, and validated as a whole.
func (in StartInput) Request(cfg *config.Config) (StartRequest, error) {
	var tpl *config.Entry
	if in.Given["template"] {
		var err error
		if tpl, err = cfg.TemplateNamed("--template", in.Template); err != nil {
			return StartRequest{}, err
		}
	}
	e := &config.Entry{Name: in.Name, Processor: in.Processor, Network: in.Network, Group: in.Group, Weight: in.Weight,
		Parameters: in.Parameters, Set: map[string]bool{}}
	for _, key := range []string{"name", "processor", "network", "group", "weight"} {
		e.Set[key] = in.Given[key]
	}
	return NewStartRequest(cfg, cfg.Layer(e, tpl), StartRequest{
		ID: in.ID, APIPort: in.APIPort, ZMQPort: in.ZMQPort, Command: in.Command, Explicit: in.Explicit, Timeout: in.Timeout})
}
