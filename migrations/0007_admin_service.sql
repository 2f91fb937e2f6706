-- admin_service: the seed's support-ticket tables, exactly as database-schemas.md writes them
-- (uuid_generate_v4() comes from uuid-ossp, created in 0001).

CREATE SCHEMA IF NOT EXISTS admin_service AUTHORIZATION admin_service_owner;
SET LOCAL ROLE admin_service_owner;

CREATE TABLE IF NOT EXISTS admin_service.support_tickets (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL,
    order_id UUID,
    subject VARCHAR(255) NOT NULL,
    description TEXT NOT NULL,
    status VARCHAR(50) DEFAULT 'open', -- 'open', 'in_progress', 'resolved', 'closed'
    priority VARCHAR(50) DEFAULT 'medium', -- 'low', 'medium', 'high', 'urgent'
    assigned_to UUID,
    resolved_at TIMESTAMP WITH TIME ZONE,
    resolution_notes TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS admin_service.ticket_comments (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    ticket_id UUID REFERENCES admin_service.support_tickets(id) ON DELETE CASCADE,
    user_id UUID NOT NULL,
    comment TEXT NOT NULL,
    is_internal BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS ticket_comments_ticket_id_idx ON admin_service.ticket_comments(ticket_id);

-- Not in the seed's DDL, which leaves updated_at to its default: keep it current like every other table.
CREATE TRIGGER support_tickets_set_updated_at BEFORE UPDATE ON admin_service.support_tickets
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
