import type { IncomingWebhookSendArguments } from '@slack/webhook';
import type { KnownBlock } from '@slack/types';
/** An incoming-webhook message whose blocks are all Block Kit blocks Slack knows. */
export type SlackIncomingWebhookMessage = Omit<IncomingWebhookSendArguments, 'blocks'> & { blocks?: KnownBlock[] };
