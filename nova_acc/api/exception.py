#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.
"""nova-acc-api's errors; each says which HTTP status it becomes.

Every message is shown to the caller as is, so none names another
project's objects.
"""

from __future__ import annotations


class APIError(Exception):
    """An error the API turns into a JSON error response."""

    code = 400
    title = 'Bad Request'

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(APIError):
    pass


class Unauthorized(APIError):
    code = 401
    title = 'Unauthorized'


class Forbidden(APIError):
    code = 403
    title = 'Forbidden'


class OverQuota(Forbidden):
    pass


class NotFound(APIError):
    code = 404
    title = 'Not Found'


class MethodNotAllowed(APIError):
    code = 405
    title = 'Method Not Allowed'

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class Conflict(APIError):
    code = 409
    title = 'Conflict'


class ContextNotFound(NotFound):
    def __init__(self, context_id: str) -> None:
        super().__init__('Device context %s could not be found.'
                         % context_id)


class ContextBound(Conflict):
    def __init__(self, context_id: str, server_id: str | None,
                 action: str = '') -> None:
        message = 'device context %s is bound to server %s' % (
            context_id, server_id)
        super().__init__(message + (action and '; ' + action))
        self.server_id = server_id
