//! plexgate's distributor (issue 6): the L4 front door on the virtual address, spreading TCP
//! connections over the gateways with health checks. Not built yet.
