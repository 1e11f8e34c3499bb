package units

// MaxPort is the highest TCP port number.
const MaxPort = 65535

// PortRule is the rule every port kato-manager takes from a person obeys,
// as it reads in their error messages.
const PortRule = "must be between 1 and 65535"

// ValidPort reports whether p is a TCP port a unit can listen on or
// connect to: 1 to MaxPort. It is the one place the range is checked;
// config wraps a failure into a FieldError naming the field.
func ValidPort(p int) bool { return p >= 1 && p <= MaxPort }
