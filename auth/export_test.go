package auth

// ClusterClient is clusterClient, for the tests of package auth_test.
var ClusterClient = clusterClient
