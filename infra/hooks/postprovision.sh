#!/bin/sh
# azd postprovision hook (azure.yaml): makes the first deployment answer.
#
# With DIRECTORY=graph the function app's identity looks users up in Microsoft Graph, which needs Graph's
# User.Read.All *application* permission. Granting a Microsoft Graph application permission takes a tenant
# admin (Privileged Role Administrator or Global Administrator). This hook grants it when the
# account `az` is signed in with may, and otherwise prints the one command for an admin to run. With
# DIRECTORY=cosmos it says how users are loaded. It never fails the deployment: everything else is in place.
set -u

GRAPH_APP_ID=00000003-0000-0000-c000-000000000000   # Microsoft Graph
USER_READ_ALL=df021288-bdef-4463-88db-98f22de89214  # its User.Read.All application role
GRAPH=https://graph.microsoft.com/v1.0
principal=${AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID:-}
directory=${DIRECTORY:-graph}
api=${SERVICE_API_URI:-https://<your function app>}

if [ "$directory" != graph ]; then
  cat <<MSG
postprovision: DIRECTORY=$directory: users are read from the Cosmos DB users container, which starts empty.
  Load each user, as a caller holding the Assignments.Admin app role (docs/deploy.md, "3. Users"):
    curl -X PUT "$api/users/<user object id>" -H "Authorization: Bearer \$TOKEN" \\
      -H "Content-Type: application/json" \\
      -d '{"upn": "ada@contoso.com", "displayName": "Ada", "accountEnabled": true}'
MSG
  exit 0
fi

if [ -z "$principal" ]; then
  echo "postprovision: AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID is not set (did provisioning finish?); nothing granted."
  exit 0
fi

print_grant_command() {
  cat <<MSG
postprovision: DIRECTORY=graph needs Microsoft Graph's User.Read.All application permission for the function
  app's identity ($principal), and it was not granted: $1
  A tenant admin grants it with (Azure CLI, signed in to this tenant):
    graph=\$(az ad sp show --id $GRAPH_APP_ID --query id -o tsv)
    az rest --method POST --uri "$GRAPH/servicePrincipals/\$graph/appRoleAssignedTo" \\
      --body "{\"principalId\": \"$principal\", \"resourceId\": \"\$graph\", \"appRoleId\": \"$USER_READ_ALL\"}"
  Until then, every request that looks a user up fails (500: Graph answers 403). Or choose the cosmos directory: azd env set DIRECTORY cosmos && azd provision
MSG
  exit 0
}

command -v az >/dev/null 2>&1 || print_grant_command "the Azure CLI (az) is not installed here."
az account show >/dev/null 2>&1 || print_grant_command "az is not signed in (az login)."

granted=$(az rest --method GET --uri "$GRAPH/servicePrincipals/$principal/appRoleAssignments" \
  --query "length(value[?appRoleId=='$USER_READ_ALL'])" --output tsv 2>/dev/null)
if [ "${granted:-0}" -ge 1 ] 2>/dev/null; then
  echo "postprovision: the function app's identity already holds Microsoft Graph User.Read.All."
  exit 0
fi

graph=$(az ad sp show --id "$GRAPH_APP_ID" --query id --output tsv 2>/dev/null)
[ -n "$graph" ] || print_grant_command "could not read Microsoft Graph's service principal with az."

# A new identity can take a little while to appear in Microsoft Graph: try a few times.
for attempt in 1 2 3; do
  if error=$(az rest --method POST --uri "$GRAPH/servicePrincipals/$graph/appRoleAssignedTo" \
    --body "{\"principalId\": \"$principal\", \"resourceId\": \"$graph\", \"appRoleId\": \"$USER_READ_ALL\"}" \
    --output none 2>&1); then
    echo "postprovision: granted Microsoft Graph User.Read.All to the function app's identity ($principal)."
    exit 0
  fi
  case "$error" in
    *Authorization_RequestDenied* | *Forbidden* | *"Insufficient privileges"*) break ;;
  esac
  [ "$attempt" = 3 ] || sleep "${GRANT_RETRY_SECONDS:-10}"
done
print_grant_command "your account may not grant it ($(echo "$error" | head -n 1))."
