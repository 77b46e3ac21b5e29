-- The fleet login runs pool_set and pool_delete (`worker pool`), which reach
-- api_validate_request and, since 0011, api_yaml_mapping_problem. 0004 and 0005 granted the
-- fleet every function that existed then; 0011 added this one without the grant, so `worker
-- pool set` as a fleet login failed with "permission denied for function
-- api_yaml_mapping_problem". (The tests ran it as the owner; a test now runs it as the fleet.)
GRANT EXECUTE ON FUNCTION api_yaml_mapping_problem(text) TO flotilla_worker;
